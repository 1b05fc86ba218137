"""The autoregressive Q-network of Q-Transformer (Chebotar et al., 2023).

Every action dimension is one token of a causal transformer, conditioned on
the observation; token i emits the Q-values of all `num_bins` bins of
dimension i given the bins already chosen for dimensions 1 .. i-1:

  tokens  = [ e(s),  E_1[a^1],  E_2[a^2],  ...,  E_{d-1}[a^{d-1}] ]         [B, d_A, W]
  h       = GPT(tokens)       (causal, learned position embeddings P)        [B, d_A, W]
  Q(s, a^{1:i-1}, a^i = k) = sigmoid(Dense_N(h_i))_k                         [B, d_A, N]

e(s) is a state encoder: an MLP for flat (or dict-of-flat) state observations,
or the project's image backbones (`q_network.make_backbone`: ViT, ViT-ts,
Nature convnet) for uint8 `[H, W, T]` frames, followed by a linear map to the
token width W. E_j is a learned embedding of dimension j's bins (one table per
dimension), P a learned position embedding. The last bin a^{d_A} is never an
input: no output depends on it. Q-values lie in [0, 1] (the paper's sparse 0/1
returns) through the sigmoid.

Causality makes output i depend only on s and a^{1:i-1}; `q_values` therefore
evaluates all d_A dimensions with one teacher-forced pass (training), and the
greedy policy decodes one dimension at a time, feeding back its choices.

The transformer is the project's GPT trunk (`gpt.GPT`: pre-LN blocks, final
LayerNorm). Defaults follow the public state-based re-implementation
(2M-kotb/Q-Transformer: 2 layers, 8 heads, width 128, dropout 0.1); the
paper's robot model (an RT-1 image encoder) is far larger.
"""
from typing import Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
from tf_agents.networks import network
from tf_agents.specs import tensor_spec

from tf_offline_q.networks import gpt
from tf_offline_q.networks import q_network
from tf_offline_q.networks import vit


def _is_image_spec(spec) -> bool:
  return (not tf.nest.is_nested(spec) and spec.shape.rank == 3 and spec.dtype == tf.uint8)


def _flat_size(spec) -> int:
  return sum(int(np.prod(s.shape)) for s in tf.nest.flatten(spec))


@gin.configurable
class ActionTransformerQNetwork(network.Network):
  """(observation `[B, obs...]`, bins `[B, d_A]`) -> Q-values `[B, d_A, num_bins]` in [0, 1].

  Also exposes the two halves the agent and the policy use separately:
  `encode(observation) -> [B, W]` and `q_values(encoding, bins) -> [B, d_A, N]`.
  """

  def __init__(self,
               observation_spec,
               action_spec,
               num_bins: int = 256,
               width: int = 128,
               depth: int = 2,
               num_heads: int = 8,
               dropout: float = 0.1,
               encoder_hidden: Sequence[int] = (256, 256),
               backbone: str = 'vit',
               variant='micro',
               aggregation='mean',
               observation_mean: Optional[Sequence[float]] = None,
               observation_std: Optional[Sequence[float]] = None,
               name: str = 'ActionTransformerQNetwork'):
    """Args:
      observation_spec: a uint8 `[H, W, T]` image spec (image backbone) or a
        float spec / nest of float specs (flattened, concatenated, state MLP).
      action_spec: bounded float spec `[d_A]`; only its size is used here.
      num_bins: bins per action dimension (the paper: 256).
      width, depth, num_heads, dropout: the causal transformer (`gpt.GPT`,
        MLP width 4 * width, learned position embeddings).
      encoder_hidden: hidden widths of the state MLP (state observations).
      backbone, variant, aggregation: image backbone (`q_network.make_backbone`).
      observation_mean, observation_std: optional per-feature normalisation of
        flat state observations, `(s - mean) / std`, stored in the network so
        that saved policies carry it.
    """
    if action_spec.shape.rank != 1:
      raise ValueError(f'action spec must have shape [d_A]; got {action_spec}')
    action_dims = int(action_spec.shape[0])
    bins_spec = tensor_spec.BoundedTensorSpec([action_dims], tf.int32, 0, int(num_bins) - 1,
                                              name='action_bins')
    super().__init__(input_tensor_spec=(observation_spec, bins_spec), state_spec=(), name=name)
    self._observation_spec = observation_spec
    self._action_dims = action_dims
    self._num_bins = int(num_bins)
    self._width = width
    self._image = _is_image_spec(observation_spec)
    if self._image:
      if backbone in ('vit', 'vit_ts'):
        vit.patch_grid(observation_spec.shape[:2], vit.get_variant(variant).patch_size)
      self._backbone = q_network.make_backbone(backbone, variant, aggregation)
      self._encoder_layers = []
    else:
      for spec in tf.nest.flatten(observation_spec):
        if not spec.dtype.is_floating:
          raise ValueError(
              f'state observations must be float (images: uint8 [H, W, T]); got {spec}')
      self._backbone = None
      self._encoder_layers = [tf.keras.layers.Dense(h, activation='relu', name=f'encoder_{i}')
                              for i, h in enumerate(encoder_hidden)]
    size = _flat_size(observation_spec)
    self._normalizer = None
    if observation_mean is not None or observation_std is not None:
      if self._image:
        raise ValueError('observation_mean / observation_std apply to state observations only')
      mean = np.zeros([size]) if observation_mean is None else np.asarray(observation_mean)
      std = np.ones([size]) if observation_std is None else np.asarray(observation_std)
      if mean.shape != (size,) or std.shape != (size,) or not (std > 0).all():
        raise ValueError(f'observation_mean / observation_std must have shape [{size}] (the '
                         f'flattened observation) and std > 0; got {mean.shape}, {std.shape}')
      self._normalizer = (tf.constant(mean, tf.float32), tf.constant(std, tf.float32))
    self._state_projection = tf.keras.layers.Dense(width, name='state_projection')
    self._bin_embedding = tf.keras.layers.Embedding(
        max(action_dims - 1, 1) * self._num_bins, width, name='bin_embedding',
        embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.02))
    self._transformer = gpt.GPT(width, depth, num_heads, dropout=dropout,
                                max_positions=action_dims, name='transformer')
    self._q_head = tf.keras.layers.Dense(self._num_bins, name='q_head')

  @property
  def num_bins(self) -> int:
    return self._num_bins

  @property
  def action_dims(self) -> int:
    return self._action_dims

  def encode(self, observation, training=False):
    """State token e(s): observation `[B, obs...]` -> `[B, W]`."""
    if self._image:
      features = self._backbone(observation, training=training)
    else:
      leaves = [tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1])
                for x in tf.nest.flatten(observation)]
      features = tf.concat(leaves, axis=-1) if len(leaves) > 1 else leaves[0]
      if self._normalizer is not None:
        features = (features - self._normalizer[0]) / self._normalizer[1]
      for layer in self._encoder_layers:
        features = layer(features)
    return self._state_projection(features)

  def q_logits(self, encoding, action_bins, training=False):
    """The pre-sigmoid outputs Dense_N(h_i) of every dimension i and bin k
    (`q_values` without the sigmoid; the logits of imitation on this network,
    agents/q_transformer_bc.py).

    Args:
      encoding: `[B, W]` from `encode`.
      action_bins: `[B, d_A]` integer bins; column i only affects outputs > i
        (the last column affects nothing).
    Returns:
      `[B, d_A, num_bins]` real-valued logits.
    """
    tokens = encoding[:, None, :]                                       # [B, 1, W]
    if self._action_dims > 1:
      offsets = tf.range(self._action_dims - 1, dtype=tf.int32) * self._num_bins
      previous = tf.cast(action_bins[:, :-1], tf.int32) + offsets       # [B, d_A - 1]
      tokens = tf.concat([tokens, self._bin_embedding(previous)], axis=1)
    h = self._transformer(tokens, training=training)                    # [B, d_A, W]
    return self._q_head(h)

  def q_values(self, encoding, action_bins, training=False):
    """Q(s, a^{1:i-1}, a^i = k) = sigmoid(`q_logits`) for every dimension i and bin k.

    Args:
      encoding: `[B, W]` from `encode`.
      action_bins: `[B, d_A]` integer bins; column i only affects outputs > i
        (the last column affects nothing).
    Returns:
      `[B, d_A, num_bins]` Q-values in [0, 1].
    """
    return tf.sigmoid(self.q_logits(encoding, action_bins, training=training))

  def call(self, inputs, step_type=None, network_state=(), training=False):
    """`(observation, action_bins)` -> `(Q [B, d_A, num_bins], network_state)`."""
    del step_type
    observation, action_bins = inputs
    encoding = self.encode(observation, training=training)
    return self.q_values(encoding, action_bins, training=training), network_state

