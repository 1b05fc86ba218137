"""TF-Agents networks: any backbone + a feed-forward head.

`C51QNetwork` emits C51 logits `[B, num_actions, num_atoms]` and exposes
`num_atoms`, so TF-Agents' `CategoricalDqnAgent` (and our `CqlC51Agent`) accept
it unchanged. `ActionLogitsNetwork` emits action logits `[B, num_actions]` for
behavioural cloning. Both are spec-driven: the observation spec fixes frame
size and stack depth; `copy()` rebuilds every layer from the constructor
arguments, so it gives an independent target network.

Head design (our choice; the paper says only "flattened into a vector that is
fed into feed-forward networks"):

  features [B, F] -> Dense(h, ReLU) for h in head_hidden -> phi [B, h_last]
                  -> (optional) phi / ||phi||_2    (DR3 feature normalization)
                  -> Dense(num_actions * num_atoms) -> [B, num_actions, num_atoms]

For ViT-S the head is two hidden layers of 896 units. The width is set by
Table 1: the learned-embedding rows add 49.7M parameters (73.9M - 24.2M) over
the `none` rows; flattening 144 tokens x 384 channels instead of taking one
384-d token adds 54,912 inputs to the first head layer, so that layer is
49.7M / 54,912 = 905 units wide. 896 (7 x 128, a multiple of the TPU lane
width) is the nearest round width. With it every ViT row is within 3.3% of the
paper (`python -m tf_offline_q.networks.summary`). The ResNet variants' head
width (640) is derived in `resnet.py`.

Multi-game networks (Scaled Q-learning): pass the dict observation spec of
`multi_head.observation_spec(num_games)` (`{'frames', 'game_id'}`) and the
output layer becomes one head per game, selected by each example's game id;
everything before it is shared (see `multi_head.py`).
"""
from typing import Callable, Optional, Sequence, Union

import tensorflow as tf
from tf_agents.networks import network

from tf_offline_q.networks import convnet
from tf_offline_q.networks import multi_head
from tf_offline_q.networks import resnet
from tf_offline_q.networks import vit
from tf_offline_q.networks import vit_ts

BACKBONES = ('vit', 'vit_ts', 'convnet', 'resnet')

BackboneSpec = Union[str, Callable[[], tf.keras.layers.Layer]]


def make_backbone(backbone: BackboneSpec, variant='S/14', aggregation='none'):
  """A fresh backbone layer: `[B, H, W, T] -> [B, F]`.

  Args:
    backbone: 'vit', 'vit_ts', 'convnet' or 'resnet', or a zero-argument
      callable that returns a new Keras layer (called again by `copy()`).
    variant: ViT variant name (`S/14`, `Ti/14`, `micro`) or ResNet variant name
      (`resnet18`, `resnet34`, `resnet50`, `resnet101`, `micro`); ignored by 'convnet'.
    aggregation: 'none', 'mean' or 'learned'; ignored by 'convnet' and 'resnet'
      (the ResNet always ends in learned spatial embeddings, see `resnet.py`).
  """
  if callable(backbone):
    return backbone()
  if backbone == 'vit':
    return vit.ViT(variant, aggregation, name='vit')
  if backbone == 'vit_ts':
    return vit_ts.ViTTS(variant, aggregation, name='vit_ts')
  if backbone == 'convnet':
    return convnet.NatureConvNet(name='convnet')
  if backbone == 'resnet':
    return resnet.ResNet(variant, name='resnet')
  raise ValueError(f'Unknown backbone {backbone!r}; expected one of {BACKBONES} or a callable')


def default_head_hidden(backbone: BackboneSpec, variant) -> Sequence[int]:
  """Hidden widths of the head: the variant's for ViTs and ResNets, none for
  the convnet (its dense-512 layer already is the penultimate layer)."""
  if isinstance(backbone, str) and backbone in ('vit', 'vit_ts'):
    return vit.get_variant(variant).head_hidden
  if isinstance(backbone, str) and backbone == 'resnet':
    return resnet.get_variant(variant).head_hidden
  return ()


def _num_actions(action_spec) -> int:
  if action_spec.shape.rank != 0 or not action_spec.dtype.is_integer:
    raise ValueError(f'action spec must be a scalar integer spec; got {action_spec}')
  return int(action_spec.maximum - action_spec.minimum + 1)


def _check_observation_spec(spec):
  if spec.shape.rank != 3:
    raise ValueError(
        f'observation spec must be [height, width, stack] (e.g. [84, 84, 4]); got shape '
        f'{spec.shape} in {spec}')


class _BackboneHead(network.Network):
  """Backbone + MLP head + linear output layer of `output_size` units.

  With a multi-game observation spec (`multi_head.observation_spec`) the
  backbone and hidden layers are shared and the output layer is one head per
  game (`multi_head.GameHeads`), chosen by each example's `game_id`.
  """

  def __init__(self, input_tensor_spec, output_size: int, backbone: BackboneSpec,
               variant, aggregation, head_hidden: Optional[Sequence[int]],
               feature_normalization: bool, name: str):
    super().__init__(input_tensor_spec=input_tensor_spec, state_spec=(), name=name)
    self._num_games = multi_head.num_games(input_tensor_spec)
    frames_spec = multi_head.frames_spec(input_tensor_spec)
    _check_observation_spec(frames_spec)
    if isinstance(backbone, str) and backbone in ('vit', 'vit_ts'):
      vit.patch_grid(frames_spec.shape[:2], vit.get_variant(variant).patch_size)
    if head_hidden is None:
      head_hidden = default_head_hidden(backbone, variant)
    self._feature_normalization = feature_normalization
    self._backbone = make_backbone(backbone, variant, aggregation)
    self._hidden = [tf.keras.layers.Dense(h, activation='relu', name=f'head_{i}')
                    for i, h in enumerate(head_hidden)]
    if self._num_games is None:
      self._output = tf.keras.layers.Dense(output_size, name='output')
    else:
      self._output = multi_head.GameHeads(self._num_games, output_size, name='output')

  @property
  def num_games(self) -> Optional[int]:
    """Number of game heads; None for a single-game (frames-only) network."""
    return self._num_games

  def features(self, observation, training=False):
    """Penultimate features phi(s), `[B, head_hidden[-1]]` (or the backbone's width),
    shared by all games."""
    frames, _ = multi_head.split(observation)
    phi = self._backbone(frames, training=training)
    for layer in self._hidden:
      phi = layer(phi)
    if self._feature_normalization:
      phi = tf.math.l2_normalize(phi, axis=-1)
    return phi

  def call_with_features(self, observation, training=False):
    """Returns `(outputs, phi)`; `outputs` as from `call`, `phi` as from `features`."""
    phi = self.features(observation, training=training)
    if self._num_games is None:
      return self._reshape_output(self._output(phi)), phi
    _, game_id = multi_head.split(observation)
    return self._reshape_output(self._output(phi, game_id)), phi

  def _reshape_output(self, outputs):
    return outputs

  def call(self, observation, step_type=None, network_state=(), training=False):
    del step_type
    outputs, _ = self.call_with_features(observation, training=training)
    return outputs, network_state


class C51QNetwork(_BackboneHead):
  """C51 Q-network: observation `[B, H, W, T]` -> logits `[B, num_actions, num_atoms]`."""

  def __init__(self, input_tensor_spec, action_spec, backbone: BackboneSpec = 'vit',
               variant='S/14', aggregation='none', num_atoms: int = 51,
               head_hidden: Optional[Sequence[int]] = None,
               feature_normalization: bool = False, name='C51QNetwork'):
    """Args:
      input_tensor_spec: observation spec, uint8 `[H, W, T]`, or the multi-game
        dict spec of `multi_head.observation_spec` (one head per game).
      action_spec: scalar bounded discrete action spec.
      backbone, variant, aggregation: see `make_backbone`.
      num_atoms: atoms of the categorical return distribution.
      head_hidden: hidden widths of the head; None takes the variant's.
      feature_normalization: L2-normalize the penultimate features (DR3).
    """
    num_actions = _num_actions(action_spec)
    super().__init__(input_tensor_spec, num_actions * num_atoms, backbone, variant,
                     aggregation, head_hidden, feature_normalization, name)
    self._num_actions = num_actions
    self._num_atoms = num_atoms

  @property
  def num_atoms(self):
    return self._num_atoms

  @property
  def num_actions(self):
    return self._num_actions

  def _reshape_output(self, outputs):
    return tf.reshape(outputs, [-1, self._num_actions, self._num_atoms])


class ActionLogitsNetwork(_BackboneHead):
  """Behavioural-cloning network: observation `[B, H, W, T]` -> logits `[B, num_actions]`."""

  def __init__(self, input_tensor_spec, action_spec, backbone: BackboneSpec = 'vit',
               variant='S/14', aggregation='none',
               head_hidden: Optional[Sequence[int]] = None,
               feature_normalization: bool = False, name='ActionLogitsNetwork'):
    num_actions = _num_actions(action_spec)
    super().__init__(input_tensor_spec, num_actions, backbone, variant, aggregation,
                     head_hidden, feature_normalization, name)
    self._num_actions = num_actions

  @property
  def num_actions(self):
    return self._num_actions
