"""Behavioural cloning: maximum likelihood of the dataset actions.

  min_theta  E_{(s, a) ~ D} [ -log pi_theta(a | s) ],   pi_theta = softmax(f_theta(s))

`f_theta` is an `ActionLogitsNetwork` on the same backbones as the Q-networks.
The agent reads the same `Trajectory` batches as `CqlC51Agent` (time axis of
any length, e.g. n_step + 1) and clones the action of the first step, so both
agents learn from the same state distribution.
"""
import collections
from typing import Optional

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.utils import common

from tf_offline_q.agents import gradients as gradients_lib
from tf_offline_q.agents import losses
from tf_offline_q.agents import policies

BcLossInfo = collections.namedtuple('BcLossInfo', ('accuracy', 'gradient_norm'))


@gin.configurable
class BehavioralCloningAgent(tf_agent.TFAgent):
  """Cross-entropy on dataset actions; greedy `policy`, epsilon-greedy `eval_policy`."""

  def __init__(self,
               time_step_spec,
               action_spec,
               cloning_network,
               optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               learning_rate: float = 1e-5,
               gradient_clipping: Optional[float] = None,
               eval_epsilon: float = policies.EVAL_EPSILON,
               train_step_counter: Optional[tf.Variable] = None,
               name: str = 'BehavioralCloningAgent'):
    """Args:
      cloning_network: network emitting action logits `[B, A]`
        (e.g. `networks.ActionLogitsNetwork`).
      optimizer: defaults to Adam(`learning_rate`).
      gradient_clipping: clip the global gradient norm to this value; None: off.
      eval_epsilon: epsilon of `eval_policy`.
    """
    tf.Module.__init__(self, name=name)
    self._network = cloning_network
    self._network.create_variables()
    self._optimizer = optimizer if optimizer is not None else tf.keras.optimizers.Adam(
        learning_rate)
    self._gradient_clipping = gradient_clipping
    policy = policies.greedy_logits_policy(time_step_spec, action_spec, cloning_network)
    self._eval_policy = policies.epsilon_greedy(policy, eval_epsilon)
    super().__init__(time_step_spec, action_spec, policy=policy, collect_policy=policy,
                     train_sequence_length=None,
                     train_step_counter=policies.own_counter(train_step_counter))

  @property
  def eval_policy(self):
    return self._eval_policy

  def _initialize(self):
    return tf.no_op()

  def _loss(self, experience, weights=None, training=False):
    """Mean over the global batch of -log pi(a_0 | s_0); `experience` is `[B, T, ...]`."""
    observation = tf.nest.map_structure(lambda x: x[:, 0], experience.observation)
    logits, _ = self._network(observation, training=training)  # [B, A]
    action = tf.cast(experience.action[:, 0], tf.int32)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=action, logits=logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), action), tf.float32)
    mean = lambda x: losses.global_mean(x, weights)
    total = common.aggregate_losses(per_example_loss=cross_entropy, sample_weight=weights,
                                    regularization_loss=self._network.losses).total_loss
    return tf_agent.LossInfo(total, BcLossInfo(accuracy=mean(correct),
                                               gradient_norm=tf.zeros([])))

  def _train(self, experience, weights=None):
    with tf.GradientTape() as tape:
      loss_info = self._loss(experience, weights=weights, training=True)
    tf.debugging.check_numerics(loss_info.loss, 'BC loss is inf or nan')
    variables = self._network.trainable_weights
    gradient_norm = gradients_lib.apply_gradients(
        self._optimizer, tape.gradient(loss_info.loss, variables), variables,
        self._gradient_clipping)
    self.train_step_counter.assign_add(1)
    return loss_info._replace(extra=loss_info.extra._replace(gradient_norm=gradient_norm))
