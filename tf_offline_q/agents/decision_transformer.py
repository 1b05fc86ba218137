"""Decision Transformer (Chen et al., 2021) and sequence behavioural cloning.

The trajectory of the last K steps is a sequence of 3K tokens

  (R_1, s_1, a_1, R_2, s_2, a_2, ..., R_K, s_K, a_K),   R_t = sum_{t' >= t} r_t'

each embedded by its own linear layer, plus a learned embedding of the
episode timestep t (shared by the three tokens of a step), a LayerNorm, then a
causal GPT trunk (`networks/gpt.py`). The action a_t is predicted from the
hidden state of the token s_t (which sees R_1..R_t, s_1..s_t, a_1..a_{t-1}):

  a_hat_t = tanh(W h(s_t))          (rescaled to the action bounds)

and the loss is the mean squared error on the dataset actions over the
non-padded steps of a batch of windows (the DT paper's eq. for continuous
actions; the official code's `action_preds[attention_mask > 0]` mean):

  L_DT = sum_{b, t: mask} ||a_hat_{b,t} - a_{b,t}||^2 / (action_dim * #{b, t: mask})

`condition_on_returns=False` is sequence behavioural cloning, "the same
backbone trained by imitation": the same network and loss without the
return-to-go tokens (2K tokens (s_1, a_1, ..., s_K, a_K)). We chose a flag of
this agent over a second agent file because nothing else differs; the train
loop's `agent_type='sequence_bc'` sets it. (CORL's "BC" baseline is an MLP on
single states; ours keeps the context, so the two differ only in the returns.)

Defaults follow the official gym code (kzl/decision-transformer,
`gym/experiment.py`): K 20, width 128, 3 layers, 1 head, ReLU MLP, dropout
0.1, AdamW lr 1e-4 with weight decay 1e-4 on every parameter, a linear warmup
lr * min((step + 1) / 10000, 1), gradient norm clipped at 0.25, returns
divided by `return_scale` (1000 for MuJoCo), states normalised by the
dataset's mean and std (given to the network; kept in non-trainable variables
so checkpoints and SavedModels carry them).

Policy (`DecisionTransformerPolicy`): its state holds the last K observations,
actions, returns-to-go and timesteps, and the number of steps seen (up to K).
At an episode's first step the context is emptied and the return-to-go set to
the policy's `target_return`; afterwards R_t = R_{t-1} - r_{t-1} (the reward
the environment returned for the previous action). The action is the
network's prediction at the last position of the left-padded context, and is
written into the context for the next step. The target return is the
non-trainable variable `target_return` of the policy: set it at construction
(`DecisionTransformerAgent(target_return=...)`), with
`agent.policy.target_return.assign(x)` before export, or on a loaded
SavedModel with `set_saved_target_return(loaded, x)`.
"""
import collections
from typing import Any, NamedTuple, Optional

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.agents import tf_agent
from tf_agents.networks import network
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tensorflow.python.trackable import data_structures  # pylint: disable=g-direct-tensorflow-import

from tf_offline_q.agents import gradients as gradients_lib
from tf_offline_q.agents import policies
from tf_offline_q.data import reverb_windows
from tf_offline_q.networks import gpt

DtLossInfo = collections.namedtuple('DtLossInfo', ('action_mse', 'gradient_norm',
                                                   'learning_rate'))


class SequenceInput(NamedTuple):
  """A batch of contexts, the network's input (`[B, K, ...]`).

  return_to_go: float32 [B, K] (raw, unscaled); observation: float32 [B, K, obs_dim];
  action: float32 [B, K, act_dim]; timestep: int32 [B, K]; mask: bool [B, K].
  """
  return_to_go: Any
  observation: Any
  action: Any
  timestep: Any
  mask: Any


def sequence_input_spec(observation_spec, action_spec, context_length: int) -> SequenceInput:
  k = int(context_length)
  return SequenceInput(
      return_to_go=tf.TensorSpec([k], tf.float32),
      observation=tf.TensorSpec([k] + list(observation_spec.shape), tf.float32),
      action=tf.TensorSpec([k] + list(action_spec.shape), tf.float32),
      timestep=tf.TensorSpec([k], tf.int32),
      mask=tf.TensorSpec([k], tf.bool))


def window_input(window: reverb_windows.Window) -> SequenceInput:
  """The network input of a `reverb_windows.Window` batch."""
  return SequenceInput(window.return_to_go, window.observation, window.action,
                       window.timestep, window.mask)


def _check_specs(observation_spec, action_spec):
  if len(observation_spec.shape) != 1:
    raise ValueError(f'The Decision Transformer needs flat observations [obs_dim], got '
                     f'{observation_spec}')
  if len(action_spec.shape) != 1 or not action_spec.dtype.is_floating:
    raise ValueError(f'The Decision Transformer needs continuous actions [act_dim], got '
                     f'{action_spec}')


@gin.configurable
class DecisionTransformerNetwork(network.Network):
  """(R, s, a) tokens -> predicted actions, `SequenceInput` -> float `[B, K, act_dim]`."""

  def __init__(self,
               observation_spec,
               action_spec,
               context_length: int = 20,
               width: int = 128,
               depth: int = 3,
               num_heads: int = 1,
               dropout: float = 0.1,
               activation: str = 'relu',
               max_timestep: int = 1000,
               return_scale: float = 1000.0,
               condition_on_returns: bool = True,
               observation_mean: Optional[np.ndarray] = None,
               observation_std: Optional[np.ndarray] = None,
               name: str = 'DecisionTransformerNetwork'):
    """Args:
      observation_spec: float `[obs_dim]` spec; action_spec: bounded float
        `[act_dim]` spec (the tanh head is rescaled to its bounds).
      context_length: K.
      width, depth, num_heads, dropout, activation: the GPT trunk.
      max_timestep: rows of the timestep embedding (longer episodes share the
        last row).
      return_scale: returns-to-go are divided by it before embedding.
      condition_on_returns: False drops the return tokens (sequence BC).
      observation_mean, observation_std: `[obs_dim]` state normalisation
        (default 0 and 1; std is floored at 1e-6).
    """
    _check_specs(observation_spec, action_spec)
    super().__init__(input_tensor_spec=sequence_input_spec(observation_spec, action_spec,
                                                           context_length),
                     state_spec=(), name=name)
    if return_scale <= 0:
      raise ValueError(f'return_scale must be > 0, got {return_scale}')
    obs_dim = int(observation_spec.shape[0])
    self._act_dim = int(action_spec.shape[0])
    self.context_length = int(context_length)
    self.condition_on_returns = bool(condition_on_returns)
    self.return_scale = float(return_scale)
    mean = np.zeros(obs_dim, np.float32) if observation_mean is None else observation_mean
    std = np.ones(obs_dim, np.float32) if observation_std is None else observation_std
    mean = np.asarray(mean, np.float32).reshape(-1)
    std = np.maximum(np.asarray(std, np.float32).reshape(-1), 1e-6)
    if mean.shape != (obs_dim,) or std.shape != (obs_dim,):
      raise ValueError(f'observation_mean / observation_std must have shape ({obs_dim},), '
                       f'got {mean.shape} / {std.shape}')
    self.observation_mean = tf.Variable(mean, trainable=False, name='observation_mean')
    self.observation_std = tf.Variable(std, trainable=False, name='observation_std')
    low = np.broadcast_to(np.asarray(action_spec.minimum, np.float32), [self._act_dim])
    high = np.broadcast_to(np.asarray(action_spec.maximum, np.float32), [self._act_dim])
    self._action_center = tf.constant((high + low) / 2.0)
    self._action_half_range = tf.constant((high - low) / 2.0)
    self._embed_timestep = gpt.TimestepEmbedding(max_timestep, width, name='embed_timestep')
    self._embed_return = tf.keras.layers.Dense(width, name='embed_return')
    self._embed_state = tf.keras.layers.Dense(width, name='embed_state')
    self._embed_action = tf.keras.layers.Dense(width, name='embed_action')
    self._embed_norm = tf.keras.layers.LayerNormalization(epsilon=1e-5, name='embed_ln')
    self._trunk = gpt.GPT(width=width, depth=depth, num_heads=num_heads, dropout=dropout,
                          activation=activation, name='gpt')
    self._predict_action = tf.keras.layers.Dense(self._act_dim, activation='tanh',
                                                 name='predict_action')

  @property
  def tokens_per_step(self) -> int:
    return 3 if self.condition_on_returns else 2

  def call(self, inputs: SequenceInput, step_type=None, network_state=(), training=False):
    """Returns (predicted actions float `[B, K, act_dim]`, ())."""
    del step_type
    k = self.context_length
    time_embedding = self._embed_timestep(inputs.timestep)                     # [B, K, D]
    states = (inputs.observation - self.observation_mean) / self.observation_std
    tokens = [self._embed_state(states) + time_embedding,
              self._embed_action(inputs.action) + time_embedding]
    if self.condition_on_returns:
      returns = inputs.return_to_go[..., tf.newaxis] / self.return_scale      # [B, K, 1]
      tokens.insert(0, self._embed_return(returns) + time_embedding)
    n = self.tokens_per_step
    width = tokens[0].shape[-1]
    x = tf.reshape(tf.stack(tokens, axis=2), [-1, n * k, width])              # [B, nK, D]
    x = self._embed_norm(x)
    key_mask = tf.reshape(tf.tile(tf.cast(inputs.mask, tf.bool)[:, :, tf.newaxis],
                                  [1, 1, n]), [-1, n * k])                    # [B, nK]
    h = tf.reshape(self._trunk(x, key_mask, training=training), [-1, k, n, width])
    state_hidden = h[:, :, n - 2]                                             # h(s_t)
    action = self._predict_action(state_hidden)                               # [B, K, A]
    return self._action_center + self._action_half_range * action, network_state


def action_mse(predicted: tf.Tensor, target: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """L_DT of one replica's batch, scaled so replicas' losses sum to the global one.

  Args:
    predicted, target: float `[B, K, act_dim]`.
    mask: bool `[B, K]`, False on padding.

  Returns:
    scalar: sum over unpadded (b, t) and dimensions of the squared error,
    divided by act_dim times the number of unpadded steps over all replicas.
  """
  fmask = tf.cast(mask, tf.float32)
  squared = tf.reduce_sum(tf.square(predicted - target), axis=-1)             # [B, K]
  count = tf.reduce_sum(fmask)
  context = tf.distribute.get_replica_context()
  if context is not None and context.num_replicas_in_sync > 1:
    count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
  act_dim = tf.cast(tf.shape(predicted)[-1], tf.float32)
  return tf.reduce_sum(squared * fmask) / (act_dim * tf.maximum(count, 1.0))


@gin.configurable
class LinearWarmup(tf.keras.optimizers.schedules.LearningRateSchedule):
  """lr * min((step + 1) / warmup_steps, 1), the official DT's LambdaLR."""

  def __init__(self, learning_rate: float, warmup_steps: int):
    self.learning_rate = float(learning_rate)
    self.warmup_steps = max(int(warmup_steps), 1)

  def __call__(self, step):
    fraction = tf.cast(step + 1, tf.float32) / float(self.warmup_steps)
    return self.learning_rate * tf.minimum(fraction, 1.0)

  def get_config(self):
    return {'learning_rate': self.learning_rate, 'warmup_steps': self.warmup_steps}


class DecisionTransformerPolicy(tf_policy.TFPolicy):
  """Acts from the last K steps kept in the policy state (see module docstring)."""

  def __init__(self, time_step_spec, action_spec, dt_network: DecisionTransformerNetwork,
               target_return: float, name: Optional[str] = None):
    k = dt_network.context_length
    state_spec = {
        'observation': tensor_spec.TensorSpec([k] + list(time_step_spec.observation.shape),
                                              tf.float32, 'observation'),
        'action': tensor_spec.TensorSpec([k] + list(action_spec.shape), tf.float32, 'action'),
        'return_to_go': tensor_spec.TensorSpec([k], tf.float32, 'return_to_go'),
        'timestep': tensor_spec.TensorSpec([k], tf.int32, 'timestep'),
        'length': tensor_spec.TensorSpec([], tf.int32, 'length'),
    }
    # Not a SavedModel dependency of the policy: PolicySaver then saves the
    # network's variables (through `variables()`) and the traced functions, but
    # does not serialise every Keras sublayer, which halves export and load time.
    self._network = data_structures.NoDependency(dt_network)
    self.target_return = tf.Variable(float(target_return), trainable=False, dtype=tf.float32,
                                     name='target_return')
    super().__init__(time_step_spec, action_spec, policy_state_spec=state_spec, name=name)

  def context(self, time_step, policy_state):
    """The context after observing `time_step`: (SequenceInput `[B, K, ...]`,
    new policy state whose last action is still zero)."""
    k = self._network.context_length
    first = time_step.is_first()                                              # [B]
    keep = tf.logical_not(first)

    def kept(x):
      shape = tf.concat([tf.shape(first), tf.ones([tf.rank(x) - 1], tf.int32)], 0)
      return tf.where(tf.reshape(keep, shape), x, tf.zeros_like(x))

    old = tf.nest.map_structure(kept, policy_state)
    reward = tf.cast(tf.reshape(time_step.reward, [-1]), tf.float32)
    rtg = tf.where(first, tf.fill(tf.shape(first), self.target_return),
                   old['return_to_go'][:, -1] - reward)
    timestep = tf.where(first, 0, old['timestep'][:, -1] + 1)
    obs = tf.cast(time_step.observation, tf.float32)

    def push(history, value):
      return tf.concat([history[:, 1:], value[:, tf.newaxis]], axis=1)

    state = {
        'observation': push(old['observation'], obs),
        'action': push(old['action'], tf.zeros_like(old['action'][:, -1])),
        'return_to_go': push(old['return_to_go'], rtg),
        'timestep': push(old['timestep'], timestep),
        'length': tf.minimum(old['length'] + 1, k),
    }
    mask = tf.range(k)[tf.newaxis, :] >= k - state['length'][:, tf.newaxis]
    inputs = SequenceInput(state['return_to_go'], state['observation'], state['action'],
                           state['timestep'], mask)
    return inputs, state

  def _distribution(self, time_step, policy_state):
    inputs, state = self.context(time_step, policy_state)
    actions, _ = self._network(inputs, training=False)
    action = actions[:, -1]                                                   # [B, A]
    state['action'] = tf.concat([state['action'][:, :-1], action[:, tf.newaxis]], axis=1)
    return policy_step.PolicyStep(tfp.distributions.Deterministic(loc=action), state, ())


def set_saved_target_return(loaded_policy, value: float) -> None:
  """Sets the target return of a policy loaded with `tf.saved_model.load`."""
  matches = [v for v in loaded_policy.model_variables if 'target_return' in v.name]
  if len(matches) != 1:
    raise ValueError('The loaded policy has no (single) target_return variable; is it a '
                     'DecisionTransformerPolicy SavedModel?')
  matches[0].assign(float(value))


@gin.configurable
class DecisionTransformerAgent(tf_agent.TFAgent):
  """Trains `DecisionTransformerNetwork` on `reverb_windows.Window` batches."""

  def __init__(self,
               time_step_spec,
               action_spec,
               dt_network: DecisionTransformerNetwork,
               target_return: Optional[float] = None,
               default_target_return: Optional[float] = None,
               optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               learning_rate: float = 1e-4,
               weight_decay: float = 1e-4,
               warmup_steps: int = 10_000,
               gradient_clipping: Optional[float] = 0.25,
               train_step_counter: Optional[tf.Variable] = None,
               name: str = 'DecisionTransformerAgent'):
    """Args:
      dt_network: the `DecisionTransformerNetwork` (its `condition_on_returns`
        makes this agent DT or sequence BC).
      target_return: the policy's initial return-to-go, in raw return units
        (DT gym: hopper 3600, walker 5000, halfcheetah 6000); unused by
        sequence BC. None: `default_target_return`.
      default_target_return: used when `target_return` is None (the train
        loop passes the dataset's ref_max_score, the expert's return).
      optimizer: default AdamW(LinearWarmup(learning_rate, warmup_steps),
        weight_decay, epsilon 1e-8) as the official code.
      gradient_clipping: global gradient norm clip (official: 0.25); None: off.
    """
    tf.Module.__init__(self, name=name)
    _check_specs(time_step_spec.observation, action_spec)
    self._network = dt_network
    self._network.create_variables()
    self._optimizer = optimizer if optimizer is not None else tf.keras.optimizers.AdamW(
        learning_rate=LinearWarmup(learning_rate, warmup_steps), weight_decay=weight_decay,
        epsilon=1e-8)
    self._gradient_clipping = gradient_clipping
    if target_return is None:
      target_return = default_target_return
    if target_return is None:
      if dt_network.condition_on_returns:
        raise ValueError('DecisionTransformerAgent.target_return is not set (gin '
                         '"DecisionTransformerAgent.target_return = 3600.0") and no default '
                         '(the dataset\'s ref_max_score) was given')
      target_return = 0.0
    elif not np.isfinite(target_return):
      raise ValueError(f'DecisionTransformerAgent.target_return must be finite, got '
                       f'{target_return}')
    policy = self._make_policy(time_step_spec, action_spec, dt_network, float(target_return))
    layout = reverb_windows.WindowLayout(dt_network.context_length,
                                         int(time_step_spec.observation.shape[0]),
                                         int(action_spec.shape[0]))
    # TF-Agents' convention: the spec of one time step, the window's K steps
    # being the time axis (the Learner traces `train` on [None, K] + spec).
    per_step = reverb_windows.window_spec(layout)._replace(terminated=())
    per_step = tf.nest.map_structure(lambda spec: tf.TensorSpec(spec.shape[1:], spec.dtype,
                                                                spec.name), per_step)
    super().__init__(time_step_spec, action_spec, policy=policy, collect_policy=policy,
                     train_sequence_length=dt_network.context_length,
                     training_data_spec=per_step,
                     train_step_counter=policies.own_counter(train_step_counter))

  @property
  def network(self) -> DecisionTransformerNetwork:
    return self._network

  def _make_policy(self, time_step_spec, action_spec, dt_network, target_return: float):
    """The agent's policy, greedy and collect alike (QT returns its own)."""
    return DecisionTransformerPolicy(time_step_spec, action_spec, dt_network, target_return)

  @property
  def window_layout(self) -> reverb_windows.WindowLayout:
    """What the agent's windows must carry."""
    return reverb_windows.WindowLayout(self._network.context_length,
                                       int(self.time_step_spec.observation.shape[0]),
                                       int(self.action_spec.shape[0]))

  def _initialize(self):
    return tf.no_op()

  def predict_actions(self, window: reverb_windows.Window, training: bool = False):
    """Predicted actions float `[B, K, act_dim]` for a `Window` batch (QT reuses it)."""
    actions, _ = self._network(window_input(window), training=training)
    return actions

  def _loss(self, experience: reverb_windows.Window, weights=None, training=False):
    """L_DT on a `Window` batch (see `action_mse`); `weights` are not supported."""
    if weights is not None:
      raise ValueError('DecisionTransformerAgent does not take sample weights')
    predicted = self.predict_actions(experience, training=training)           # [B, K, A]
    loss = action_mse(predicted, experience.action, experience.mask)
    return tf_agent.LossInfo(loss, DtLossInfo(action_mse=loss, gradient_norm=tf.zeros([]),
                                              learning_rate=tf.zeros([])))

  def _train(self, experience, weights=None):
    with tf.GradientTape() as tape:
      loss_info = self._loss(experience, weights=weights, training=True)
    tf.debugging.check_numerics(loss_info.loss, 'Decision Transformer loss is inf or nan')
    variables = self._network.trainable_weights
    gradient_norm = gradients_lib.apply_gradients(
        self._optimizer, tape.gradient(loss_info.loss, variables), variables,
        self._gradient_clipping)
    self.train_step_counter.assign_add(1)
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    # Divided by the replicas: the Learner sums LossInfo over them.
    lr = tf.cast(tf.convert_to_tensor(self._optimizer.learning_rate), tf.float32) / replicas
    return loss_info._replace(extra=loss_info.extra._replace(gradient_norm=gradient_norm,
                                                             learning_rate=lr))
