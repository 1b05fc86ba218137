"""Conservative Q-learning with distributional C51 n-step targets.

The objective of "Scaling Offline Q-Learning with Vision Transformers",
eq. (1), with the distributional TD error of C51 (Kumar et al., 2020; 2023):

  min_theta  alpha ( E_{s~D}[ log sum_{a'} exp Q_theta(s, a') ] - E_{s,a~D}[ Q_theta(s, a) ] )
             + TDError(theta; D)

  Q_theta(s, a) = sum_i p_theta(z_i | s, a) z_i              (expected return)
  TDError      = E[ -sum_i (Phi T Z)_i log p_theta(z_i | s_0, a_0) ]
  T Z          = G + gamma^n (prod_k d_k) z,   G = sum_{t<n} gamma^t (prod_{k<t} d_k) clip(r_t, -1, 1)
  Z(s_n)       = target-network distribution of a* = argmax_a Q_target(s_n, a)
                 (or argmax of the online Q with `double_dqn`)

plus, optionally, `dr3_weight * E|phi(s_0) . phi(s_n)|` on penultimate features.

Defaults are Table 2: alpha 0.05, n 3, gamma 0.99, 51 atoms on [-10, 10],
Adam 1e-5, hard target update every 2000 updates, rewards clipped to [-1, 1].

Data: TF-Agents `Trajectory` batches with a time axis of n_step + 1, exactly
like `CategoricalDqnAgent` with `n_step_update=n_step`.
"""
import collections
from typing import Optional

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.utils import common

from tf_offline_q.agents import losses
from tf_offline_q.agents import gradients as gradients_lib
from tf_offline_q.agents import policies

CqlC51LossInfo = collections.namedtuple(
    'CqlC51LossInfo', ('td_loss', 'cql_loss', 'dr3_loss', 'q_data', 'logsumexp_q', 'q_mean',
                       'gradient_norm'))


@gin.configurable
class CqlC51Agent(categorical_dqn_agent.CategoricalDqnAgent):
  """CQL + n-step C51, a drop-in `CategoricalDqnAgent`.

  Policies: `policy` is greedy in expected Q, `collect_policy` epsilon-greedy
  with `epsilon_greedy`, `eval_policy` epsilon-greedy with the paper's 0.001.
  """

  def __init__(self,
               time_step_spec,
               action_spec,
               categorical_q_network,
               optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               learning_rate: float = 1e-5,
               cql_alpha: float = 0.05,
               n_step: int = 3,
               gamma: float = 0.99,
               min_q_value: float = -10.0,
               max_q_value: float = 10.0,
               target_update_period: int = 2000,
               reward_clip: Optional[float] = 1.0,
               double_dqn: bool = False,
               gradient_clipping: Optional[float] = None,
               dr3_weight: float = 0.0,
               epsilon_greedy: float = 0.01,
               eval_epsilon: float = 0.001,
               train_step_counter: Optional[tf.Variable] = None,
               name: str = 'CqlC51Agent'):
    """Args:
      time_step_spec, action_spec: TF-Agents specs (see `tf_offline_q.specs`).
      categorical_q_network: a network emitting `[B, A, num_atoms]` logits with
        a `num_atoms` property (e.g. `networks.C51QNetwork`).
      optimizer: defaults to Adam(`learning_rate`).
      cql_alpha: weight alpha of the CQL regulariser; 0 gives plain n-step C51.
      n_step: n of the n-step return; batches have n + 1 time steps.
      gamma: discount factor.
      min_q_value, max_q_value: ends of the C51 support.
      target_update_period: hard target-network update period (in updates).
      reward_clip: rewards are clipped to [-reward_clip, reward_clip]; None: off.
      double_dqn: choose a* with the online network instead of the target.
      gradient_clipping: clip the global gradient norm to this value; None: off.
      dr3_weight: weight of the DR3 feature regulariser (needs a network with
        `call_with_features`, e.g. `C51QNetwork`).
      epsilon_greedy: epsilon of the collect policy.
      eval_epsilon: epsilon of `eval_policy` (Table 2: 0.001).
    """
    if n_step < 1:
      raise ValueError(f'n_step must be >= 1, got {n_step}')
    if dr3_weight and not hasattr(categorical_q_network, 'call_with_features'):
      raise ValueError('dr3_weight > 0 needs a network with `call_with_features` (C51QNetwork)')
    self._cql_alpha = cql_alpha
    self._reward_clip = reward_clip
    self._double_dqn = double_dqn
    self._dr3_weight = dr3_weight
    self._global_norm_clip = gradient_clipping
    self._target_update_period = target_update_period
    super().__init__(
        time_step_spec, action_spec, categorical_q_network,
        optimizer if optimizer is not None else tf.keras.optimizers.Adam(learning_rate),
        min_q_value=min_q_value, max_q_value=max_q_value, epsilon_greedy=epsilon_greedy,
        n_step_update=n_step, target_update_period=target_update_period, gamma=gamma,
        train_step_counter=policies.own_counter(train_step_counter), name=name)
    self._eval_policy = policies.epsilon_greedy(self.policy, eval_epsilon)

  @property
  def eval_policy(self):
    """Epsilon-greedy (epsilon 0.001 by default) policy for evaluation."""
    return self._eval_policy

  @property
  def support(self):
    """`[num_atoms]` atoms z_i of the return distribution."""
    return self._support

  def _network_outputs(self, network, observation, with_features, training):
    if with_features:
      return network.call_with_features(observation, training=training)
    logits, _ = network(observation, training=training)
    return logits, None

  def _loss(self, experience, weights=None, training=False, **unused_kwargs):
    """The CQL + C51 loss of one batch, scaled by the global batch size.

    Args:
      experience: `Trajectory` with fields `[B, n_step + 1, ...]`.
      weights: optional `[B]` per-example weights.
    Returns:
      `LossInfo(loss, CqlC51LossInfo)`; every entry is a global-batch mean.
    """
    support = self._support
    n = self._n_step_update
    # 1. The window: s_0, a_0, r_0..r_{n-1}, d_0..d_{n-1}, s_n.
    # (Observations may be nests, e.g. the multi-game {'frames', 'game_id'}.)
    observation = tf.nest.map_structure(lambda x: x[:, 0], experience.observation)
    action = experience.action[:, 0]
    next_observation = tf.nest.map_structure(lambda x: x[:, n], experience.observation)
    rewards = experience.reward[:, :n]
    if self._reward_clip is not None:
      rewards = tf.clip_by_value(rewards, -self._reward_clip, self._reward_clip)
    discounts = experience.discount[:, :n]

    # 2. n-step return G and bootstrap discount gamma^n prod d.
    returns, bootstrap = losses.n_step_return(rewards, discounts, self._gamma)

    # 3. Target distribution Phi T Z(s_n, a*), no gradient.
    next_target_logits, _ = self._target_q_network(next_observation, training=False)
    want_features = self._dr3_weight > 0
    if self._double_dqn or want_features:
      next_online_logits, next_features = self._network_outputs(
          self._q_network, next_observation, want_features, training)
    next_q = losses.expected_q(next_online_logits if self._double_dqn else next_target_logits,
                               support)
    next_action = tf.argmax(next_q, axis=-1)
    next_probabilities = losses.select_action(tf.nn.softmax(next_target_logits), next_action)
    target_support = returns[:, None] + bootstrap[:, None] * support[None, :]
    target = tf.stop_gradient(
        losses.project_distribution(target_support, next_probabilities, support))

    # 4. TD error: cross-entropy between Phi T Z and p_theta(. | s_0, a_0).
    logits, features = self._network_outputs(self._q_network, observation, want_features,
                                             training)
    chosen_logits = losses.select_action(logits, action)
    td_loss = tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=chosen_logits)

    # 5. CQL: logsumexp_a' Q(s_0, a') - Q(s_0, a_0).
    q_values = losses.expected_q(logits, support)
    cql_loss, logsumexp_q, q_data = losses.cql_regularizer(q_values, action)

    # 6. Optional DR3 on penultimate features.
    dr3_loss = (losses.dr3_regularizer(features, tf.stop_gradient(next_features))
                if want_features else tf.zeros_like(td_loss))

    per_example = td_loss + self._cql_alpha * cql_loss + self._dr3_weight * dr3_loss
    mean = lambda x: losses.global_mean(x, weights)
    total = common.aggregate_losses(per_example_loss=per_example, sample_weight=weights,
                                    regularization_loss=self._q_network.losses).total_loss
    extra = CqlC51LossInfo(
        td_loss=mean(td_loss), cql_loss=mean(cql_loss), dr3_loss=mean(dr3_loss),
        q_data=mean(q_data), logsumexp_q=mean(logsumexp_q),
        q_mean=mean(tf.reduce_mean(q_values, axis=-1)), gradient_norm=tf.zeros([]))
    return tf_agent.LossInfo(total, extra)

  def _train(self, experience, weights):
    with tf.GradientTape() as tape:
      loss_info = self._loss(experience, weights=weights, training=True)
    tf.debugging.check_numerics(loss_info.loss, 'CQL loss is inf or nan')
    variables = self._q_network.trainable_weights
    gradients = tape.gradient(loss_info.loss, variables)
    gradient_norm = gradients_lib.apply_gradients(
        self._optimizer, gradients, variables, self._global_norm_clip)
    self.train_step_counter.assign_add(1)
    self._update_target()
    return loss_info._replace(extra=loss_info.extra._replace(gradient_norm=gradient_norm))
