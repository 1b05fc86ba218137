"""Behaviour cloning on Q-Transformer's action transformer (the imitation baseline of issue 15).

The same network as Q-Transformer (`ActionTransformerQNetwork`: one causal
token per action dimension, teacher-forced on the dataset's bins of the
previous dimensions) and the same discretisation (`discretization`, N =
`num_bins` bins per dimension), trained by maximum likelihood instead of
Q-learning. The network's N pre-sigmoid outputs of dimension i (`q_logits`:
the Q-values before their sigmoid) are read as the logits of a categorical
distribution over dimension i's bins given the state and the dataset's bins
of dimensions 1 .. i-1:

  pi_theta(k | s, a^{1:i-1}) = softmax(f_theta(s, a^{1:i-1}))_k        f_theta = Dense_N(h_i)

  L(theta) = E_{(s, a) ~ D} [ -1/d_A sum_{i=1}^{d_A} log pi_theta(a^i | s, a^{1:i-1}) ]

with a^i the bin of the dataset action's i-th dimension. Shapes: observation
`[B, obs]`, action `[B, d_A]` -> bins `[B, d_A]`, logits `[B, d_A, N]`,
per-example loss `[B]` (mean over the d_A dimensions), then the (weighted)
global-batch mean.

The policy is Q-Transformer's own (`q_transformer.GreedyAutoregressivePolicy`):
a^i = argmax_k sigmoid(f_theta(s, a^{1:i-1}))_k = argmax_k pi_theta(k | s, a^{1:i-1}),
one dimension at a time, bins mapped to their centres. So this agent differs
from `QTransformerAgent` only in its loss: it subclasses it and replaces
`_loss`; the update (`_train`: Adam, optional gradient clipping, the train
step counter +1 per update) is the parent's.

What it does not have. No target network (`uses_target_network = False`: none
is built, updated or checkpointed), no conservative term, no Monte-Carlo
bound, no rewards: its windows are Q-Transformer's layout with n = 1 (one step
(s_t, a_t) per item, `window_layout`; every dataset step is trained, including
those just before a time-limit cutoff), whose s_{t+1}, rewards and G_t are
read by nothing. Batch dicts (see `q_transformer`) need only 'observation'
and 'action'.
"""
import collections
from typing import Optional

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.utils import common

from tf_offline_q.agents import losses
from tf_offline_q.agents import q_transformer
from tf_offline_q.data import reverb_windows

N_STEP = 1   # windows of one step: only (s_t, a_t) is read
GAMMA = 0.98  # the (unused) G_t of those windows: Q-Transformer's default gamma
BATCH_KEYS = ('observation', 'action')

QTransformerBcLossInfo = collections.namedtuple(
    'QTransformerBcLossInfo', ('cross_entropy', 'accuracy', 'gradient_norm'))


def window_layout(observation_dim: int, action_dim: int) -> reverb_windows.WindowLayout:
  """The Reverb windows of `QTransformerBcAgent` (its `window_layout`), known
  before it is built (`train/continuous.py`'s `configured_layout`)."""
  return reverb_windows.WindowLayout(N_STEP, observation_dim, action_dim, next_observation=True,
                                     gamma=GAMMA)


@gin.configurable
class QTransformerBcAgent(q_transformer.QTransformerAgent):
  """Per-dimension softmax cross-entropy towards the dataset's bins; greedy policy."""

  uses_target_network = False

  def __init__(self,
               time_step_spec,
               action_spec,
               q_network,
               optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               learning_rate: float = 3e-4,
               gradient_clipping: Optional[float] = None,
               train_step_counter: Optional[tf.Variable] = None,
               name: str = 'QTransformerBcAgent'):
    """Args:
      time_step_spec, action_spec: TF-Agents specs; the action spec is a
        bounded float `[d_A]` spec (bins span its bounds).
      q_network: an `ActionTransformerQNetwork` built for these specs (its
        `num_bins` is the discretisation).
      optimizer: defaults to Adam(`learning_rate`).
      gradient_clipping: clip the global gradient norm; None: off.
    """
    # Every argument of the parent is passed here, so no `QTransformerAgent.*`
    # gin binding reaches this agent; those without a use in the loss are inert.
    super().__init__(time_step_spec, action_spec, q_network, optimizer=optimizer,
                     learning_rate=learning_rate, cql_alpha=0.0, conservative_regularizer='mse',
                     min_return=0.0, use_mc_return=False, n_step=N_STEP, gamma=GAMMA, tau=1.0,
                     target_update_period=1, gradient_clipping=gradient_clipping,
                     train_step_counter=train_step_counter, name=name)

  def _loss(self, experience, weights=None, training=False):
    """The cross-entropy of one batch, scaled by the global batch size.

    Args:
      experience: a batch dict with 'observation' `[B, obs...]` and 'action'
        `[B, d_A]` (other keys are ignored), or a `reverb_windows.Window`.
      weights: optional `[B]` per-example weights.
    Returns:
      `LossInfo(loss, QTransformerBcLossInfo)`; every entry is a global-batch
      mean (`accuracy`: the fraction of dimensions whose teacher-forced
      argmax is the dataset's bin).
    """
    experience, weights = self._as_batch(experience, weights)
    if not isinstance(experience, dict) or set(BATCH_KEYS) - set(experience):
      got = sorted(experience) if isinstance(experience, dict) else type(experience).__name__
      raise ValueError(f'a Q-Transformer BC batch is a dict with keys {list(BATCH_KEYS)} (see '
                       f'tf_offline_q/agents/q_transformer_bc.py); got {got}')
    if not experience['action'].shape.is_compatible_with((None, self._discretizer.action_dims)):
      raise ValueError(f"batch['action'] must have shape [B, {self._discretizer.action_dims}]; "
                       f"got {experience['action'].shape}")
    # 1. Dataset bins a^i and the logits of every bin of every dimension,
    #    teacher-forced on the dataset's previous bins.
    bins = self._discretizer.to_bins(experience['action'])                 # [B, d_A]
    encoding = self._q_network.encode(experience['observation'], training=training)
    logits = self._q_network.q_logits(encoding, bins, training=training)   # [B, d_A, N]

    # 2. -1/d_A sum_i log softmax(logits_i)[a^i].
    cross_entropy = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=bins, logits=tf.cast(logits, tf.float32)), axis=1)          # [B]

    total = common.aggregate_losses(per_example_loss=cross_entropy, sample_weight=weights,
                                    regularization_loss=self._q_network.losses).total_loss
    mean = lambda x: losses.global_mean(x, weights)
    correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), bins)
    extra = QTransformerBcLossInfo(
        cross_entropy=mean(cross_entropy),
        accuracy=mean(tf.reduce_mean(tf.cast(correct, tf.float32), axis=1)),
        gradient_norm=tf.zeros([]))
    return tf_agent.LossInfo(total, extra)
