"""Q-Transformer: autoregressive per-dimension Q-learning (Chebotar et al., 2023).

Each of the d_A action dimensions is discretised into N bins (`discretization`)
and treated as one step of an MDP over dimensions. With Q(s, a^{1:i}) the
value of the prefix a^{1:i} = (a^1 .. a^i) (`ActionTransformerQNetwork`), the
per-dimension Bellman update is

  Q(s_t, a_t^{1:i}) <- max_{a^{i+1}} Q'(s_t, a_t^{1:i}, a^{i+1})             i < d_A
  Q(s_t, a_t^{1:d}) <- sum_{j<n} gamma^j r_{t+j} + gamma^n max_{a^1} Q'(s_{t+n}, a^1)
                                                                             i = d_A

(Q' the target network; n = 1 is the paper's one-step rule, n > 1 its n-step
variant; a terminal inside the window stops both the reward sum and the
bootstrap, as `losses.n_step_return` does.) The Monte-Carlo lower bound
raises every target to the episode's discounted return-to-go G_t:

  y_i = max(B*Q'_i, G_t)                                          (`use_mc_return`)

and the loss, in the paper's order, is

  J(theta) = 1/2 E_D[ (Q_theta(s, a^{1:i}) - y_i)^2 ]
           + cql_alpha * 1/2 E_D[ 1/(N-1) sum_{k != a^i} (Q_theta(s, a^{1:i-1}, k) - R_min)^2 ]

with the expectations over dataset transitions and the d_A dimensions (mean
over both), R_min = `min_return` (0 for the paper's sparse 0/1 rewards): every
bin that is not the dataset's is pushed towards the lowest return. The
ablation `conservative_regularizer='softmax'` replaces the second term by the
CQL-style cql_alpha * E[ logsumexp_k Q_theta(s, a^{1:i-1}, k) - Q_theta(s, a^{1:i}) ].
cql_alpha = 0 removes conservatism.

The policy decodes greedily one dimension at a time,
a^i = argmax_k Q(s, a^{1:i-1}, k), and maps bins to their centres.

Defaults. The paper's project page does not state every hyperparameter; we
take alpha = 1 (both public implementations use 1/2 * 1), and the state-based
re-implementation's (2M-kotb/Q-Transformer) 256 bins, n = 3, gamma = 0.98,
Adam 3e-4 and an EMA target network with tau = 0.005 updated every step
(`target_update_period=1`; tau = 1 with a longer period gives hard updates).
Q-values lie in [0, 1] (sigmoid), so rewards must keep returns in [0, 1].

Training batch: a dict of tensors (`training_data_spec` gives the specs);
B transitions (s_t, a_t) with their n-step windows:

  observation       [B, obs...]  s_t (float state, dict of float states, or uint8 frames)
  action            [B, d_A]     a_t, float, within the action spec's bounds
                                 (the policy's [-1, 1] for the Fetch tasks)
  rewards           [B, n]       r_t .. r_{t+n-1}
  discounts         [B, n]       d_k = 0 if the transition at t+k ended the episode
                                 (terminal), else 1; rewards after it are ignored
  next_observation  [B, obs...]  s_{t+n} (any placeholder state if the window
                                 has a terminal: it is not bootstrapped)
  mc_return         [B]          G_t = sum_{k>=0} gamma^k r_{t+k} to the end of the
                                 episode, with the agent's gamma

A window that reaches a time-limit truncation (no terminal) before n steps
should not be produced (or should be dropped); sample t only where s_{t+n}
exists. `batch_from_window` converts the trajectory windows of
`tf_offline_q.data.reverb_windows` (context_length = n, next_observation,
gamma = the agent's gamma: the agent's `window_layout`) to this dict; those
windows end at a real step, so they never cross a truncation. The agent trains
on either: `train(window)` converts a `Window` itself (its left-padded windows
get weight 0), which is how `train_eval` (agent_type 'q_transformer',
`tf_offline_q/train/continuous.py`) feeds it; for flat state observations its
`training_data_spec` is therefore the window's per-step spec (the DT's and
QT's convention: the n window steps are the time axis).
"""
import collections
from typing import Optional

import gin
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.agents import tf_agent
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.utils import common

from tf_offline_q.agents import discretization
from tf_offline_q.agents import gradients as gradients_lib
from tf_offline_q.agents import losses
from tf_offline_q.agents import policies
from tf_offline_q.data import reverb_windows
from tf_offline_q.networks import action_transformer

REGULARIZERS = ('mse', 'softmax')
BATCH_KEYS = ('observation', 'action', 'rewards', 'discounts', 'next_observation', 'mc_return')

QTransformerLossInfo = collections.namedtuple(
    'QTransformerLossInfo', ('td_loss', 'conservative_loss', 'q_data', 'q_other', 'target',
                             'mc_raised', 'gradient_norm'))


def greedy_bins(q_network, observation, training=False):
  """Greedy autoregressive decoding, one dimension at a time.

      a^i = argmax_k Q(s, a^{1:i-1}, k),   i = 1 .. d_A

  Args:
    q_network: an `ActionTransformerQNetwork` (anything with `encode`,
      `q_values`, `action_dims`).
    observation: `[B, obs...]`.
  Returns:
    `(bins [B, d_A] int32, q [B, d_A])`: the chosen bins and Q(s, a^{1:i}) of
    each chosen prefix.
  """
  encoding = q_network.encode(observation, training=training)
  dims = q_network.action_dims
  bins = tf.zeros([tf.shape(encoding)[0], dims], tf.int32)
  chosen_q = []
  for i in range(dims):
    q = q_network.q_values(encoding, bins, training=training)[:, i]  # [B, N]
    choice = tf.argmax(q, axis=-1, output_type=tf.int32)              # [B]
    chosen_q.append(tf.reduce_max(q, axis=-1))
    bins = tf.concat([bins[:, :i], choice[:, None], bins[:, i + 1:]], axis=1)
  return bins, tf.stack(chosen_q, axis=1)


def conservative_regularizer(q_all, bins, kind='mse', min_return=0.0):
  """Per-example conservative term, mean over the d_A dimensions.

      'mse':      1/2 * 1/(N-1) sum_{k != a^i} (Q(s, a^{1:i-1}, k) - R_min)^2   (the paper's)
      'softmax':  logsumexp_k Q(s, a^{1:i-1}, k) - Q(s, a^{1:i})                (CQL-style)

  Args:
    q_all: `[B, d_A, N]` Q-values of every bin of every dimension.
    bins: `[B, d_A]` dataset bins a^i.
    kind: 'mse' or 'softmax'.
    min_return: R_min of 'mse'.
  Returns:
    `[B]`.
  """
  num_bins = q_all.shape[-1]
  if kind == 'mse':
    other = 1.0 - tf.one_hot(bins, num_bins, dtype=q_all.dtype)            # [B, d_A, N]
    push = tf.reduce_sum(other * tf.square(q_all - min_return), axis=-1) / (num_bins - 1)
    return 0.5 * tf.reduce_mean(push, axis=1)
  if kind == 'softmax':
    q_data = tf.gather(q_all, bins, axis=2, batch_dims=2)
    return tf.reduce_mean(tf.reduce_logsumexp(q_all, axis=-1) - q_data, axis=1)
  raise ValueError(f'conservative_regularizer must be one of {REGULARIZERS}; got {kind!r}')


class GreedyAutoregressivePolicy(tf_policy.TFPolicy):
  """Deterministic policy: `greedy_bins` mapped to the bin centres."""

  def __init__(self, time_step_spec, action_spec, q_network, discretizer, name=None):
    super().__init__(time_step_spec, action_spec, name=name)
    self._q_network = q_network
    self._discretizer = discretizer

  def _variables(self):
    return self._q_network.variables

  def _distribution(self, time_step, policy_state):
    bins, _ = greedy_bins(self._q_network, time_step.observation)
    action = tf.cast(self._discretizer.from_bins(bins), self.action_spec.dtype)
    return policy_step.PolicyStep(tfp.distributions.Deterministic(action), policy_state, ())


def training_data_spec(observation_spec, action_spec, n_step):
  """Specs of one (unbatched) training example, see the module docstring."""
  return {
      'observation': observation_spec,
      'action': tf.TensorSpec(action_spec.shape, tf.float32, name='action'),
      'rewards': tf.TensorSpec([n_step], tf.float32, name='rewards'),
      'discounts': tf.TensorSpec([n_step], tf.float32, name='discounts'),
      'next_observation': observation_spec,
      'mc_return': tf.TensorSpec([], tf.float32, name='mc_return'),
  }


def batch_from_window(window, position=None):
  """A `reverb_windows.Window` batch (K = n) -> `(batch dict, weights [B])`.

  Example b starts at window step j = position[b]: (s_t, a_t) is the window's
  step j, its rewards and discounts are the window's from j on (zero rewards,
  discount 1 past the window's end), `next_observation` is s_{t+n} (the
  observation after the window's last step, or the episode's final one),
  `mc_return` is `discounted_return_to_go[:, j]` = G_t. An example whose step
  is left padding (before the episode start) gets weight 0.

  `position` None: j = 0 (the n-step window of the window's first step),
  except in windows whose last step is terminal, where j is drawn uniformly
  from 0 .. K-1 with weight K: the episode's last n - 1 steps start no
  window, so they are trained here, as often in expectation as every other
  step, with their returns cut by the terminal (no bootstrap). Without this
  the transitions that reach a success (Fetch: the terminal step) would never
  be trained for n > 1. Steps before a time-limit truncation that leave fewer
  than n steps are not trained (their n-step target needs s_{t+n}).

  A `next_observation` of shape `[B, K, obs]` (the observation after each
  step: the layout of the per-step `training_data_spec`, with which the
  Learner traces `train`) gives s_{t+n} as its last step.
  """
  if isinstance(window.next_observation, tuple) or isinstance(
      window.discounted_return_to_go, tuple):
    raise ValueError('Q-Transformer needs windows with next_observation=True and gamma set '
                     '(reverb_windows.WindowLayout; agent.window_layout)')
  following = window.next_observation
  if following.shape.rank == window.observation.shape.rank:  # [B, K, obs]: after each step
    following = following[:, -1]
  k = window.reward.shape[1]
  batch_size = tf.shape(window.reward)[0]
  scale = tf.ones([batch_size])
  if position is None:
    terminated = tf.equal(window.discount[:, -1], 0.0)                      # [B]
    drawn = tf.random.uniform([batch_size], 0, k, dtype=tf.int32)
    position = tf.where(terminated, drawn, tf.zeros_like(drawn))
    scale = tf.where(terminated, float(k), 1.0)
  position = tf.cast(position, tf.int32)
  at = lambda x: tf.gather(x, position, axis=1, batch_dims=1)
  steps = position[:, None] + tf.range(k)[None, :]                          # [B, K]
  inside = steps < k
  shifted = lambda x, fill: tf.where(inside, tf.gather(x, tf.minimum(steps, k - 1), axis=1,
                                                       batch_dims=1), fill)
  batch = {'observation': at(window.observation), 'action': at(window.action),
           'rewards': shifted(window.reward, 0.0), 'discounts': shifted(window.discount, 1.0),
           'next_observation': following,
           'mc_return': at(window.discounted_return_to_go)}
  return batch, tf.cast(at(window.mask), tf.float32) * scale


def _is_flat_state(observation_spec) -> bool:
  return (not tf.nest.is_nested(observation_spec) and observation_spec.shape.rank == 1
          and observation_spec.dtype.is_floating)


@gin.configurable
class QTransformerAgent(tf_agent.TFAgent):
  """Q-Transformer with the conservative and Monte-Carlo terms; greedy policies."""

  # A subclass whose loss reads no target network (agents/q_transformer_bc.py)
  # sets this False: none is built, updated or checkpointed.
  uses_target_network = True

  def __init__(self,
               time_step_spec,
               action_spec,
               q_network,
               optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               learning_rate: float = 3e-4,
               cql_alpha: float = 1.0,
               conservative_regularizer: str = 'mse',
               min_return: float = 0.0,
               use_mc_return: bool = True,
               n_step: int = 3,
               gamma: float = 0.98,
               tau: float = 0.005,
               target_update_period: int = 1,
               gradient_clipping: Optional[float] = None,
               train_step_counter: Optional[tf.Variable] = None,
               name: str = 'QTransformerAgent'):
    """Args:
      time_step_spec, action_spec: TF-Agents specs; the action spec is a
        bounded float `[d_A]` spec (bins span its bounds).
      q_network: an `ActionTransformerQNetwork` built for these specs (its
        `num_bins` is the discretisation).
      optimizer: defaults to Adam(`learning_rate`).
      cql_alpha: weight alpha of the conservative regulariser; 0: none.
      conservative_regularizer: 'mse' (the paper's: non-dataset bins towards
        `min_return`) or 'softmax' (the CQL-style ablation).
      min_return: the lowest possible return R_min.
      use_mc_return: targets = max(Bellman target, mc_return).
      n_step: length n of the reward windows (`rewards` is `[B, n]`).
      gamma: discount factor (also the one `mc_return` was computed with).
      tau, target_update_period: every `target_update_period` updates,
        theta' <- tau theta + (1 - tau) theta'.
      gradient_clipping: clip the global gradient norm; None: off.
    """
    tf.Module.__init__(self, name=name)
    if conservative_regularizer not in REGULARIZERS:
      raise ValueError(f'conservative_regularizer must be one of {REGULARIZERS}; got '
                       f'{conservative_regularizer!r}')
    if n_step < 1:
      raise ValueError(f'n_step must be >= 1, got {n_step}')
    if not 0.0 < tau <= 1.0 or target_update_period < 1:
      raise ValueError(f'need 0 < tau <= 1 and target_update_period >= 1; got tau={tau}, '
                       f'target_update_period={target_update_period}')
    if cql_alpha < 0:
      raise ValueError(f'cql_alpha must be >= 0, got {cql_alpha}')
    if q_network.action_dims != int(action_spec.shape[0]):
      raise ValueError(f'q_network has {q_network.action_dims} action dimensions but the '
                       f'action spec has shape {action_spec.shape}')
    self._discretizer = discretization.Discretizer(action_spec, q_network.num_bins)
    self._q_network = q_network
    self._q_network.create_variables()
    self._target_q_network = common.maybe_copy_target_network_with_checks(
        q_network, None, name='TargetQNetwork') if self.uses_target_network else None
    self._optimizer = optimizer if optimizer is not None else tf.keras.optimizers.Adam(
        learning_rate)
    self._cql_alpha = cql_alpha
    self._conservative_regularizer = conservative_regularizer
    self._min_return = min_return
    self._use_mc_return = use_mc_return
    self._n_step = n_step
    self._gamma = gamma
    self._tau = tau
    self._target_update_period = target_update_period
    self._gradient_clipping = gradient_clipping
    self._update_target = common.Periodically(
        lambda: common.soft_variables_update(self._q_network.variables,
                                             self._target_q_network.variables, tau,
                                             tau_non_trainable=1.0),
        target_update_period, 'update_target') if self.uses_target_network else tf.no_op
    policy = GreedyAutoregressivePolicy(time_step_spec, action_spec, q_network,
                                        self._discretizer)
    self._observation_spec = time_step_spec.observation
    data_spec, sequence_length = training_data_spec(time_step_spec.observation, action_spec,
                                                    n_step), None
    if _is_flat_state(time_step_spec.observation):
      # Fed `Window`s by train_eval: one step's spec, the n window steps the
      # time axis (the Learner traces `train` on [None, n] + spec), as the DT's.
      window = reverb_windows.window_spec(self.window_layout)
      data_spec = tf.nest.map_structure(
          lambda spec: tf.TensorSpec(spec.shape[1:], spec.dtype, spec.name),
          window._replace(terminated=(), next_observation=()))._replace(
              next_observation=window.next_observation)
      sequence_length = n_step
    super().__init__(
        time_step_spec, action_spec, policy=policy, collect_policy=policy,
        train_sequence_length=sequence_length, training_data_spec=data_spec,
        train_step_counter=policies.own_counter(train_step_counter))

  @property
  def eval_policy(self):
    """The greedy policy (deterministic; no epsilon for continuous actions)."""
    return self.policy

  @property
  def discretizer(self):
    return self._discretizer

  @property
  def q_network(self):
    return self._q_network

  @property
  def window_layout(self) -> reverb_windows.WindowLayout:
    """The `reverb_windows` windows this agent trains on (flat state
    observations): K = n_step steps, s_{t+n}, and G_t with the agent's gamma."""
    spec = self._observation_spec
    if not _is_flat_state(spec):
      raise ValueError(f'Window training needs a flat float state observation; got {spec}')
    return reverb_windows.WindowLayout(self._n_step, int(spec.shape[0]),
                                       self._discretizer.action_dims, next_observation=True,
                                       gamma=self._gamma)

  def _as_batch(self, experience, weights):
    """`(batch dict, weights)` of a batch dict or a `reverb_windows.Window`."""
    if isinstance(experience, reverb_windows.Window):
      experience, window_weights = batch_from_window(experience)
      weights = window_weights if weights is None else weights * window_weights
    return experience, weights

  def _initialize(self):
    if not self.uses_target_network:
      return tf.no_op()
    return common.soft_variables_update(self._q_network.variables,
                                        self._target_q_network.variables, tau=1.0)

  def _check_batch(self, experience):
    if not isinstance(experience, dict) or set(BATCH_KEYS) - set(experience):
      got = sorted(experience) if isinstance(experience, dict) else type(experience).__name__
      raise ValueError(f'a Q-Transformer batch is a dict with keys {list(BATCH_KEYS)} (see '
                       f'tf_offline_q/agents/q_transformer.py); got {got}')
    expect = {'action': (None, self._discretizer.action_dims),
              'rewards': (None, self._n_step), 'discounts': (None, self._n_step),
              'mc_return': (None,)}
    for key, shape in expect.items():
      if not experience[key].shape.is_compatible_with(shape):
        raise ValueError(f'batch[{key!r}] must have shape {list(shape)} (None: batch; n_step='
                         f'{self._n_step}); got {experience[key].shape}')

  def targets(self, experience):
    """Per-dimension targets from the target network, no gradient.

    Returns:
      `(target [B, d_A], bellman [B, d_A])`: y_i = max(B*Q'_i, G_t) (or
      B*Q'_i without the MC bound) and the Bellman targets B*Q'_i alone.
    """
    self._check_batch(experience)
    bins = self._discretizer.to_bins(experience['action'])                 # [B, d_A]
    batch_size = tf.shape(bins)[0]
    # One target-network pass over s_t (teacher-forced a_t) and s_{t+n}.
    both = tf.nest.map_structure(lambda a, b: tf.concat([a, b], axis=0),
                                 experience['observation'], experience['next_observation'])
    q_both = self._target_q_network.q_values(
        self._target_q_network.encode(both), tf.concat([bins, tf.zeros_like(bins)], axis=0))
    q_target, q_next = q_both[:batch_size], q_both[batch_size:]           # [B, d_A, N]
    # i < d_A: max over the next dimension's bins at the same state.
    within = tf.reduce_max(q_target[:, 1:], axis=-1)                      # [B, d_A - 1]
    # i = d_A: n-step return + gamma^n prod d * max over the first dimension at s_{t+n}.
    returns, bootstrap = losses.n_step_return(
        tf.cast(experience['rewards'], tf.float32), tf.cast(experience['discounts'], tf.float32),
        self._gamma)
    last = returns + bootstrap * tf.reduce_max(q_next[:, 0], axis=-1)     # [B]
    bellman = tf.concat([within, last[:, None]], axis=1)                  # [B, d_A]
    target = bellman
    if self._use_mc_return:
      target = tf.maximum(bellman, tf.cast(experience['mc_return'], tf.float32)[:, None])
    return tf.stop_gradient(target), tf.stop_gradient(bellman)

  def _loss(self, experience, weights=None, training=False):
    """The Q-Transformer loss of one batch, scaled by the global batch size.

    Args:
      experience: the batch dict of the module docstring.
      weights: optional `[B]` per-example weights.
    Returns:
      `LossInfo(loss, QTransformerLossInfo)`; every entry is a global-batch mean.
    """
    experience, weights = self._as_batch(experience, weights)
    # 1. Dataset bins and the online Q of every bin of every dimension.
    target, bellman = self.targets(experience)                             # [B, d_A]
    bins = self._discretizer.to_bins(experience['action'])                 # [B, d_A]
    encoding = self._q_network.encode(experience['observation'], training=training)
    q_all = self._q_network.q_values(encoding, bins, training=training)    # [B, d_A, N]
    q_data = tf.gather(q_all, bins, axis=2, batch_dims=2)                  # [B, d_A]

    # 2. TD term: 1/2 (Q(s, a^{1:i}) - y_i)^2, mean over dimensions.
    td_loss = 0.5 * tf.reduce_mean(tf.square(q_data - target), axis=1)    # [B]

    # 3. Conservative term on the bins a^i is not.
    conservative = conservative_regularizer(q_all, bins, self._conservative_regularizer,
                                            self._min_return)                # [B]

    per_example = td_loss + self._cql_alpha * conservative
    total = common.aggregate_losses(per_example_loss=per_example, sample_weight=weights,
                                    regularization_loss=self._q_network.losses).total_loss
    mean = lambda x: losses.global_mean(x, weights)
    raised = tf.cast(target > bellman, tf.float32)
    q_other = (tf.reduce_sum(q_all, axis=-1) - q_data) / (self._q_network.num_bins - 1)
    extra = QTransformerLossInfo(
        td_loss=mean(td_loss), conservative_loss=mean(conservative),
        q_data=mean(tf.reduce_mean(q_data, 1)), q_other=mean(tf.reduce_mean(q_other, 1)),
        target=mean(tf.reduce_mean(target, 1)), mc_raised=mean(tf.reduce_mean(raised, 1)),
        gradient_norm=tf.zeros([]))
    return tf_agent.LossInfo(total, extra)

  def _train(self, experience, weights=None):
    experience, weights = self._as_batch(experience, weights)
    with tf.GradientTape() as tape:
      loss_info = self._loss(experience, weights=weights, training=True)
    tf.debugging.check_numerics(loss_info.loss, 'Q-Transformer loss is inf or nan')
    variables = self._q_network.trainable_weights
    gradient_norm = gradients_lib.apply_gradients(
        self._optimizer, tape.gradient(loss_info.loss, variables), variables,
        self._gradient_clipping)
    self.train_step_counter.assign_add(1)
    self._update_target()
    return loss_info._replace(extra=loss_info.extra._replace(gradient_norm=gradient_norm))


def make_agent(time_step_spec, action_spec, network_kwargs: Optional[dict] = None,
               **agent_kwargs) -> QTransformerAgent:
  """A `QTransformerAgent` with a new `ActionTransformerQNetwork` for these specs
  (hyperparameters not given here come from gin or the defaults)."""
  net = action_transformer.ActionTransformerQNetwork(
      tensor_spec.from_spec(time_step_spec.observation), action_spec, **(network_kwargs or {}))
  return QTransformerAgent(time_step_spec, action_spec, net, **agent_kwargs)
