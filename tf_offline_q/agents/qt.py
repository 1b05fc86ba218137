"""QT: the Q-value regularized Transformer (Hu et al., 2024).

The policy pi_theta is the Decision Transformer (`decision_transformer.py`:
return-to-go, state and action tokens, context K). Two critics Q_phi1,
Q_phi2 (`networks/critics.py`), their target copies Q_phi1', Q_phi2' and an
exponential-moving-average copy pi_theta' of the policy give the critic
targets. One training step on a batch of windows (s_1, a_1, r_1, ..., s_K,
a_K, r_K) followed by s_{K+1} (`reverb_windows.Window`, with
`next_observation`), in the paper's / official code's order:

1. Critics: the n-step double-Q estimate over the window. For each step j,
   with n_j = K - j + 1 (to the window's end; `n_step=None`) or
   min(n_step, K - j + 1) (`n_step=1` is the one-step ablation),

     y_j = sum_{i=j}^{j+n_j-1} gamma^{i-j} r_i
           + gamma^{n_j} (1 - done) min_{l=1,2} Q_phil'(s_{j+n_j}, a'_{j+n_j}),
     a'_t = pi_theta'(R_{<=t}, s_{<=t}, a_{<t})_t          (the EMA policy's action)

   where a termination inside the sum stops both the later rewards and the
   bootstrap (a termination is always an episode's last step, so only the
   window's last step can be one), and a'_{K+1} comes from the EMA policy
   on the context moved one step on (`next_step_input`: s_{K+1} appended,
   return-to-go R_{K+1} = R_K - r_K). The loss, over the unpadded steps
   (left padding at episode starts is masked):

     L_Q(phi) = sum_{l=1,2} E_j[ (Q_phil(s_j, a_j) - y_j)^2 ]

2. Policy: with a_hat_j = pi_theta(...)_j the policy's action at every step,

     L(theta) = L_DT(theta) + eta * ( - E_j[Q_phii(s_j, a_hat_j)] / sg(E_j[|Q_phik(s_j, a_hat_j)|]) )

   L_DT the DT's masked action MSE (`decision_transformer.action_mse`), sg
   stop-gradient (the normaliser is not differentiated), i in {1, 2} drawn
   at random each step and k = 3 - i the other critic. The paper's text
   available here (papers/qt_...txt, a summary) gives L = L_DT + L_Q without
   naming the critic per term; the choice is the official code's
   (`training/ql_trainer.py`: a fair coin picks Q1 / |Q2| or Q2 / |Q1|,
   both the online critics just updated in step 1). Our coin is a stateless draw from
   (`seed`, train step), so every replica of a distributed step (and a
   single-device run) makes the same choice.

3. Targets: phi' <- tau phi + (1 - tau) phi' every step; the EMA policy
   theta' <- decay theta' + (1 - decay) theta every `ema_update_period`
   steps once the step exceeds `ema_start_step` (the official 0.995, 5,
   1000: before that the EMA policy keeps its initial weights, which are
   the policy's initial weights).

Inference (`QtPolicy`): the DT's context with its current return-to-go R_t
(the target return minus the rewards so far) is evaluated with
`num_candidates` returns-to-go at the last position,

     R_t + return_scale * u_c,   u_c in linspace(-candidate_spread, candidate_spread)

(the official code perturbs R_t by return_scale * N(0, 0.1) for 49 of 50
candidates; we use a fixed grid), one action each; the action is chosen by
Q(s_t, a_c) = min(Q_phi1', Q_phi2')(s_t, a_c) of the target critics (the
official code evaluates with `critic_target`): the highest Q (the paper,
`selection='argmax'`) or a sample from softmax(Q) (the official code,
`selection='softmax'`). The policy's own context keeps R_t unperturbed.

Defaults follow the official code and reference facts: gamma 0.99, tau
0.005, critics 3 x 256 Mish with Adam 3e-4, actor lr 3e-4 with weight decay
1e-4 (AdamW here; torch's Adam adds it to the gradient), no warmup, the
gradient norm clipped per task (`gradient_clipping`, run.sh: 9 for most
tasks), eta per task (run.sh: hopper 1 - 3, walker2d 2, halfcheetah 0.4 - 5,
maze2d 0.01 - 5, antmaze 0.005 - 0.05, adroit 0.001 - 0.1; see gin/qt*.gin).
Not implemented: the official cosine learning-rate decay (`--lr_decay`), its
`max_q_backup` option, the inference candidate whose return-to-go is the
critic's own estimate, and the official DT loss's extra state-prediction
term (our DT, and so L_DT here, is the action MSE alone). The EMA policy
computes targets without dropout. Rewards enter the critic unscaled (the
Q term is scale-free).

Under `train_eval` (agent_type 'qt', gin/qt_*.gin) the windows carry the
observation after their last step (`window_layout.next_observation`).
"""
import collections
import dataclasses
from typing import Optional

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.agents import tf_agent
from tf_agents.trajectories import policy_step
from tf_agents.utils import common

from tf_offline_q.agents import decision_transformer as dt
from tf_offline_q.agents import gradients as gradients_lib
from tf_offline_q.data import reverb_windows
from tf_offline_q.networks import critics

SELECTIONS = ('argmax', 'softmax')

QtLossInfo = collections.namedtuple('QtLossInfo', (
    'dt_loss', 'q_term', 'actor_loss', 'critic_loss', 'q_data', 'q_policy', 'q_normalizer',
    'target_q', 'actor_gradient_norm', 'critic_gradient_norm', 'learning_rate'))


# ------------------------------------------------------------------ targets
def n_step_targets(reward, discount, next_q, gamma: float, n_step: Optional[int] = None):
  """Bellman targets y_j of every step of a window (see the module docstring).

  Args:
    reward: float `[B, K]` r_j (0 on padding).
    discount: float `[B, K]` d_j in {0, 1}: 0 where step j terminated the
      episode (1 on padding).
    next_q: float `[B, K]` the bootstrap value of the state after step j,
      min_l Q_l'(s_{j+1}, a'_{j+1}); `next_q[:, K-1]` is at the observation
      after the window.
    gamma: discount factor.
    n_step: None: sum the rewards to the window's end; else at most n_step.

  Returns:
    float `[B, K]`: y_j = sum_{i=j}^{e_j - 1} gamma^{i-j} (prod_{j<=l<i} d_l) r_i
    + gamma^{e_j - j} (prod_{j<=l<e_j} d_l) next_q[e_j - 1],  e_j = min(j + n, K).
  """
  k = reward.shape[1]
  if k is None:
    raise ValueError('n_step_targets needs a static window length K')
  if n_step is not None and n_step < 1:
    raise ValueError(f'n_step must be None or >= 1, got {n_step}')
  j = np.arange(k)[:, None]
  i = np.arange(k)[None, :]
  end = np.minimum(j + (k if n_step is None else n_step), k)           # [K, 1] e_j
  in_sum = (i >= j) & (i < end)                                         # [K(j), K(i)]
  reward_weights = tf.constant(np.where(in_sum, gamma ** np.maximum(i - j, 0), 0.0),
                               tf.float32)
  # dead[:, t] = number of terminations among steps < t; prod_{a<=l<b} d_l
  # is 1 iff dead[:, b] == dead[:, a].
  dead = tf.concat([tf.zeros_like(discount[:, :1]), tf.cumsum(1.0 - discount, axis=1)], 1)
  alive = tf.cast(tf.abs(dead[:, tf.newaxis, :k] - dead[:, :k, tf.newaxis]) < 0.5,
                  tf.float32)                                           # [B, j, i]
  returns = tf.reduce_sum(reward_weights * alive * reward[:, tf.newaxis, :], axis=-1)
  end = end[:, 0]
  alive_end = tf.cast(tf.abs(tf.gather(dead, end, axis=1) - dead[:, :k]) < 0.5, tf.float32)
  bootstrap = tf.constant(gamma ** (end - np.arange(k)), tf.float32) * alive_end
  return returns + bootstrap * tf.gather(next_q, end - 1, axis=1)


def next_step_input(window: reverb_windows.Window) -> dt.SequenceInput:
  """The window's context moved one step on, `[B, K, ...]`: position j holds
  step j + 1 (the last position s_{K+1} = `next_observation`, `[B, obs_dim]`,
  or its last step if it is `[B, K, obs_dim]` (the observation after each
  step, the layout of `training_data_spec`), R_{K+1} =
  R_K - r_K, timestep + 1, a zero action), so the policy's action at
  position j is its action at s_{j+1}."""
  def shift(x, last):
    return tf.concat([x[:, 1:], last[:, tf.newaxis]], axis=1)

  following = tf.cast(window.next_observation, tf.float32)
  if following.shape.rank == 3:  # [B, K, obs_dim]: the observation after each step
    following = following[:, -1]
  return dt.SequenceInput(
      return_to_go=shift(window.return_to_go, window.return_to_go[:, -1] - window.reward[:, -1]),
      observation=shift(window.observation, following),
      action=shift(window.action, tf.zeros_like(window.action[:, -1])),
      timestep=shift(window.timestep, window.timestep[:, -1] + 1),
      mask=shift(window.mask, tf.ones_like(window.mask[:, -1])))


def normalized_observation(dt_network: dt.DecisionTransformerNetwork, observation):
  """States as the DT sees them, (s - mean) / std (the critics' input too)."""
  return (tf.cast(observation, tf.float32) - dt_network.observation_mean) / \
      dt_network.observation_std


def _replicas() -> int:
  context = tf.distribute.get_replica_context()
  return context.num_replicas_in_sync if context is not None else 1


def _all_reduce_sum(x):
  if _replicas() > 1:
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, x)
  return x


def masked_mean(x, mask, global_sum: bool = False):
  """Mean of `x [B, K]` over the unpadded steps of the global batch.

  With `global_sum=False` the result is this replica's sum over the global
  count (replicas' values add up to the global mean, and so do their
  gradients); with `global_sum=True` the global mean itself on every replica.
  """
  fmask = tf.cast(mask, tf.float32)
  total = tf.reduce_sum(x * fmask)
  count = _all_reduce_sum(tf.reduce_sum(fmask))
  if global_sum:
    total = _all_reduce_sum(total)
  return total / tf.maximum(count, 1.0)


# ------------------------------------------------------------------- policy
class QtPolicy(dt.DecisionTransformerPolicy):
  """The DT policy choosing among candidate returns-to-go by the critics' Q."""

  def __init__(self, time_step_spec, action_spec, dt_network, critic_network,
               target_return: float, num_candidates: int = 50,
               candidate_spread: float = 0.2, selection: str = 'argmax',
               name: Optional[str] = None):
    """Args:
      critic_network: the (target) `TwinCriticNetwork` scoring candidates.
      num_candidates: candidate returns-to-go per step (>= 1).
      candidate_spread: candidates are R_t + return_scale * u,
        u in linspace(-spread, spread, num_candidates) (0 for one candidate).
      selection: 'argmax' (highest Q) or 'softmax' (sample from softmax(Q)).
    """
    if selection not in SELECTIONS:
      raise ValueError(f'selection must be one of {SELECTIONS}, got {selection!r}')
    if num_candidates < 1 or candidate_spread < 0:
      raise ValueError(f'need num_candidates >= 1 and candidate_spread >= 0, got '
                       f'{num_candidates} and {candidate_spread}')
    offsets = (np.zeros(1) if num_candidates == 1 else
               np.linspace(-candidate_spread, candidate_spread, num_candidates))
    self._offsets = tf.constant(offsets * dt_network.return_scale, tf.float32)
    self._num_candidates = int(num_candidates)
    self._selection = selection
    self._critic = critic_network
    super().__init__(time_step_spec, action_spec, dt_network, target_return, name=name)

  def _variables(self):
    return super()._variables() + self._critic.variables

  def candidates(self, time_step, policy_state):
    """(actions float `[B, N, A]`, Q float `[B, N]`, new policy state) of the
    N candidate returns-to-go after observing `time_step`."""
    inputs, state = self.context(time_step, policy_state)
    n = self._num_candidates
    tiled = tf.nest.map_structure(lambda x: tf.repeat(x, n, axis=0), inputs)  # [B*N, K, ...]
    batch = tf.shape(inputs.mask)[0]
    rtg = tiled.return_to_go
    last = rtg[:, -1] + tf.tile(self._offsets, [batch])
    rtg = tf.concat([rtg[:, :-1], last[:, tf.newaxis]], axis=1)
    actions = self._network(tiled._replace(return_to_go=rtg), training=False)[0][:, -1]
    q = self._critic((normalized_observation(self._network, tiled.observation[:, -1]),
                      actions), training=False)[0]
    q = tf.reduce_min(q, axis=-1)                                             # [B*N]
    act_dim = actions.shape[-1]
    return tf.reshape(actions, [batch, n, act_dim]), tf.reshape(q, [batch, n]), state

  def _distribution(self, time_step, policy_state):
    actions, q, state = self.candidates(time_step, policy_state)
    if self._selection == 'argmax':
      index = tf.argmax(q, axis=-1, output_type=tf.int32)
    else:
      index = tf.random.categorical(q, 1, dtype=tf.int32)[:, 0]
    action = tf.gather(actions, index, batch_dims=1)                        # [B, A]
    state['action'] = tf.concat([state['action'][:, :-1], action[:, tf.newaxis]], axis=1)
    return policy_step.PolicyStep(tfp.distributions.Deterministic(loc=action), state, ())


# -------------------------------------------------------------------- agent
@gin.configurable
class QtAgent(dt.DecisionTransformerAgent):
  """QT on `reverb_windows.Window` batches with `next_observation`."""

  def __init__(self,
               time_step_spec,
               action_spec,
               dt_network: dt.DecisionTransformerNetwork,
               critic_network: Optional[critics.TwinCriticNetwork] = None,
               target_return: Optional[float] = None,
               default_target_return: Optional[float] = None,
               eta: float = 1.0,
               gamma: float = 0.99,
               n_step: Optional[int] = None,
               tau: float = 0.005,
               ema_decay: float = 0.995,
               ema_update_period: int = 5,
               ema_start_step: int = 1000,
               optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               learning_rate: float = 3e-4,
               weight_decay: float = 1e-4,
               warmup_steps: int = 0,
               critic_optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               critic_learning_rate: float = 3e-4,
               gradient_clipping: Optional[float] = 9.0,
               num_candidates: int = 50,
               candidate_spread: float = 0.2,
               selection: str = 'argmax',
               seed: int = 0,
               train_step_counter: Optional[tf.Variable] = None,
               name: str = 'QtAgent'):
    """Args:
      dt_network: the policy, a `DecisionTransformerNetwork` with
        `condition_on_returns=True`.
      critic_network: a `TwinCriticNetwork`; default one from gin / defaults.
      target_return, default_target_return: as `DecisionTransformerAgent`.
      eta: weight of the Q term (0: the DT's update).
      gamma: discount; n_step: None (to the window's end) or a cap (1: one-step).
      tau: soft update rate of the target critics (every step).
      ema_decay, ema_update_period, ema_start_step: the EMA policy.
      optimizer, learning_rate, weight_decay, warmup_steps: the policy's
        optimiser (default AdamW with `dt.LinearWarmup`).
      critic_optimizer, critic_learning_rate: default Adam(3e-4).
      gradient_clipping: global norm clip of each update (None: off).
      num_candidates, candidate_spread, selection: inference (`QtPolicy`).
      seed: seeds the per-step choice of numerator critic.
    """
    if not dt_network.condition_on_returns:
      raise ValueError('QtAgent needs a DecisionTransformerNetwork with '
                       'condition_on_returns=True (QT conditions on returns-to-go)')
    for field, value, ok in (('eta', eta, eta >= 0), ('gamma', gamma, 0 <= gamma <= 1),
                             ('tau', tau, 0 < tau <= 1),
                             ('ema_decay', ema_decay, 0 <= ema_decay < 1),
                             ('ema_update_period', ema_update_period, ema_update_period >= 1),
                             ('n_step', n_step, n_step is None or n_step >= 1)):
      if not ok or (value is not None and not np.isfinite(value)):
        raise ValueError(f'QtAgent.{field} = {value!r} is out of range (eta >= 0, '
                         '0 <= gamma <= 1, 0 < tau <= 1, 0 <= ema_decay < 1, '
                         'ema_update_period >= 1, n_step None or >= 1)')
    # The critics and the inference settings come first: `_make_policy` (called by the
    # DT agent's constructor) builds QT's policy over the target critics.
    if critic_network is None:
      critic_network = critics.TwinCriticNetwork(time_step_spec.observation, action_spec)
    self._critic = critic_network
    self._critic.create_variables()
    self._target_critic = common.maybe_copy_target_network_with_checks(
        critic_network, None, name='TargetTwinCriticNetwork')
    self._inference = (num_candidates, candidate_spread, selection)
    super().__init__(time_step_spec, action_spec, dt_network, target_return=target_return,
                     default_target_return=default_target_return, optimizer=optimizer,
                     learning_rate=learning_rate, weight_decay=weight_decay,
                     warmup_steps=warmup_steps, gradient_clipping=gradient_clipping,
                     train_step_counter=train_step_counter, name=name)
    self._eta = float(eta)
    self._gamma = float(gamma)
    self._n_step = n_step
    self._tau = float(tau)
    self._ema_decay = float(ema_decay)
    self._ema_update_period = int(ema_update_period)
    self._ema_start_step = int(ema_start_step)
    self._seed = int(seed)
    self._ema_network = common.maybe_copy_target_network_with_checks(
        dt_network, None, name='EmaDecisionTransformerNetwork')
    self._critic_optimizer = critic_optimizer if critic_optimizer is not None else \
        tf.keras.optimizers.Adam(critic_learning_rate)
    self._initialize()
    # TF-Agents' convention (as the DT's): one step's spec, the window's K steps
    # the time axis; `next_observation` per step is the observation after it.
    self._training_data_spec = self._training_data_spec._replace(
        next_observation=tf.TensorSpec(time_step_spec.observation.shape, tf.float32,
                                       'next_observation'))

  def _make_policy(self, time_step_spec, action_spec, dt_network, target_return: float):
    """QT's policy: the DT choosing among candidate returns-to-go by the target critics' Q."""
    return QtPolicy(time_step_spec, action_spec, dt_network, self._target_critic, target_return,
                    *self._inference)

  @property
  def window_layout(self) -> reverb_windows.WindowLayout:
    """The DT's windows plus the observation after the last step."""
    return dataclasses.replace(super().window_layout, next_observation=True)

  @property
  def critic_network(self):
    return self._critic

  @property
  def target_critic_network(self):
    return self._target_critic

  @property
  def ema_network(self):
    return self._ema_network

  def _initialize(self):
    """Target critics and EMA policy := the online ones."""
    return tf.group(
        common.soft_variables_update(self._critic.variables, self._target_critic.variables, 1.0),
        common.soft_variables_update(self._network.variables, self._ema_network.variables, 1.0))

  def _check_window(self, window):
    if not isinstance(window, reverb_windows.Window) or isinstance(window.next_observation,
                                                                   tuple):
      raise ValueError('QtAgent trains on reverb_windows.Window batches with next_observation '
                       '(WindowLayout(..., next_observation=True); agent.window_layout)')

  # ------------------------------------------------------------ the losses
  def critic_targets(self, window: reverb_windows.Window):
    """y `[B, K]` from the target critics and the EMA policy (no gradient)."""
    self._check_window(window)
    following = next_step_input(window)
    next_action, _ = self._ema_network(following, training=False)              # [B, K, A]
    next_q, _ = self._target_critic(
        (normalized_observation(self._network, following.observation), next_action))
    next_q = tf.reduce_min(next_q, axis=-1)                                   # [B, K]
    # A termination can only be the window's last step; `discount` marks it.
    targets = n_step_targets(window.reward, window.discount, next_q, self._gamma, self._n_step)
    return tf.stop_gradient(targets)

  def critic_loss(self, window: reverb_windows.Window):
    """(L_Q, target mean, Q(s, a) mean): sum over both critics of the masked MSE."""
    targets = self.critic_targets(window)
    q, _ = self._critic((normalized_observation(self._network, window.observation),
                         window.action), training=True)                       # [B, K, 2]
    loss = (masked_mean(tf.square(q[..., 0] - targets), window.mask) +
            masked_mean(tf.square(q[..., 1] - targets), window.mask))
    q_data = masked_mean(tf.reduce_mean(q, axis=-1), window.mask)
    return loss, masked_mean(targets, window.mask), q_data

  def numerator_critic(self, step):
    """i in {0, 1} of the Q term's numerator: a fair coin from (seed, step)."""
    seed = tf.stack([tf.constant(self._seed, tf.int64), tf.cast(step, tf.int64)])
    return tf.cast(tf.random.stateless_uniform([], seed) < 0.5, tf.int32)

  def actor_loss(self, window: reverb_windows.Window, critic_index, training: bool = False):
    """(L_DT, Q term, Q(s, a_hat) mean, normaliser) of the policy's actions."""
    predicted = self.predict_actions(window, training=training)               # [B, K, A]
    dt_loss = dt.action_mse(predicted, window.action, window.mask)
    q, _ = self._critic((normalized_observation(self._network, window.observation),
                         predicted), training=False)                          # [B, K, 2]
    numerator = tf.gather(q, critic_index, axis=-1)
    other = tf.gather(q, 1 - critic_index, axis=-1)
    normalizer = tf.stop_gradient(masked_mean(tf.abs(other), window.mask, global_sum=True))
    q_term = -masked_mean(numerator, window.mask) / tf.maximum(normalizer, 1e-8)
    return dt_loss, q_term, masked_mean(tf.reduce_mean(q, -1), window.mask), normalizer

  def _loss(self, experience, weights=None, training=False):
    """L_DT + eta * Q term + L_Q of a batch (no update); extra: `QtLossInfo`."""
    if weights is not None:
      raise ValueError('QtAgent does not take sample weights')
    critic_loss, target_q, q_data = self.critic_loss(experience)
    dt_loss, q_term, q_policy, normalizer = self.actor_loss(
        experience, self.numerator_critic(self.train_step_counter), training=training)
    actor_loss = dt_loss + self._eta * q_term
    zero = tf.zeros([])
    return tf_agent.LossInfo(actor_loss + critic_loss, QtLossInfo(
        dt_loss=dt_loss, q_term=q_term, actor_loss=actor_loss, critic_loss=critic_loss,
        q_data=q_data, q_policy=q_policy, q_normalizer=normalizer / _replicas(),
        target_q=target_q, actor_gradient_norm=zero, critic_gradient_norm=zero,
        learning_rate=zero))

  def _update_targets(self, step):
    """phi' <- tau phi + (1 - tau) phi'; the EMA policy every period after the start."""
    update_critic = common.soft_variables_update(
        self._critic.variables, self._target_critic.variables, self._tau,
        tau_non_trainable=1.0)
    step = tf.cast(step, tf.int64)
    due = tf.logical_and(step > self._ema_start_step,
                         tf.equal(step % self._ema_update_period, 0))
    # No tf.cond around the update (a cross-replica update inside control flow
    # fails under MirroredStrategy): when not due, the EMA is blended with itself.
    ema_variables = self._ema_network.variables
    sources = [tf.where(due, online, ema) for online, ema in
               zip(self._network.variables, ema_variables)]
    update_ema = common.soft_variables_update(sources, ema_variables, 1.0 - self._ema_decay,
                                              tau_non_trainable=1.0)
    return tf.group(update_critic, update_ema)

  def _train(self, experience, weights=None):
    if weights is not None:
      raise ValueError('QtAgent does not take sample weights')
    window = experience
    step = tf.identity(self.train_step_counter)
    # 1. Critics on the n-step double-Q targets.
    with tf.GradientTape() as tape:
      critic_loss, target_q, q_data = self.critic_loss(window)
    tf.debugging.check_numerics(critic_loss, 'QT critic loss is inf or nan')
    critic_variables = self._critic.trainable_weights
    critic_norm = gradients_lib.apply_gradients(
        self._critic_optimizer, tape.gradient(critic_loss, critic_variables), critic_variables,
        self._gradient_clipping)
    # 2. Policy: L_DT + eta * (-Q_i / sg mean |Q_k|), with the updated critics.
    with tf.GradientTape() as tape:
      dt_loss, q_term, q_policy, normalizer = self.actor_loss(
          window, self.numerator_critic(step), training=True)
      actor_loss = dt_loss + self._eta * q_term
    tf.debugging.check_numerics(actor_loss, 'QT policy loss is inf or nan')
    actor_variables = self._network.trainable_weights
    actor_norm = gradients_lib.apply_gradients(
        self._optimizer, tape.gradient(actor_loss, actor_variables), actor_variables,
        self._gradient_clipping)
    # 3. Target critics and EMA policy.
    with tf.control_dependencies([actor_norm, critic_norm]):
      self._update_targets(step)
    self.train_step_counter.assign_add(1)
    replicas = _replicas()
    lr = tf.cast(tf.convert_to_tensor(self._optimizer.learning_rate), tf.float32) / replicas
    return tf_agent.LossInfo(actor_loss + critic_loss, QtLossInfo(
        dt_loss=dt_loss, q_term=q_term, actor_loss=actor_loss, critic_loss=critic_loss,
        q_data=q_data, q_policy=q_policy, q_normalizer=normalizer / replicas,
        target_q=target_q, actor_gradient_norm=actor_norm, critic_gradient_norm=critic_norm,
        learning_rate=lr))
