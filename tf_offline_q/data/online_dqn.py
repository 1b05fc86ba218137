"""An online DQN / C51 agent that learns while it plays: the behaviour of DQN-Replay.

DQN-Replay (Agarwal et al., 2020) is everything an online Dopamine DQN agent
saw while it learned. This module is that agent, sized for a CPU: TF-Agents'
`DqnAgent` (or `CategoricalDqnAgent`, `agent_type='c51'`), epsilon-greedy
exploration with Dopamine's linearly decaying epsilon, a uniform replay memory
and a target network. `launch/generate_logged_replay.py` runs it and writes
every transition it played as Dopamine checkpoint files.

Learning (Mnih et al., 2015), one update every `update_period` agent steps
once the memory holds `min_replay_history` steps:

  y    = clip(r, -1, 1) + gamma * (1 - terminal) * max_a' Q_target(s', a')
  loss = mean_batch Huber(y - Q(s, a))                       (DqnAgent)

(`c51`: the categorical projection of TF-Agents' `CategoricalDqnAgent`.) The
target network is copied from the online one every `target_update_period`
updates. Epsilon (Dopamine's `linearly_decaying_epsilon`) is 1 during the
first `min_replay_history` steps, then falls linearly to `epsilon_train` over
`epsilon_decay_steps` steps.

`agent_type='heuristic'` (`HeuristicAgent`) is not a learner: it plays the
same epsilon schedule over a scripted policy (`envs/minatar_heuristics.py`,
MinAtar Asterix and Freeway) instead of over Q-values, for games this agent
does not learn within a CPU budget.

Torsos (`torso`), each followed by a dense head (`head_hidden`):

  'cells'   MinAtar only: the 84x84 frame is read back to its 10x10 cell grid
            (the centre pixel of each 7x7 cell, `minatar.read_cells`; exact),
            so the network sees `[B, 10, 10, T]` grey levels / 255;
            conv 16 @ 3x3 stride 1, ReLU, flatten (MinAtar's own baseline
            network, Young & Tian 2019), head 128.
  'small'   any 84x84 game: the NIPS-2013 DQN torso, conv 16 @ 8x8 stride 4,
            conv 32 @ 4x4 stride 2, flatten, head 256.
  'nature'  the Nature-DQN convnet of `networks/convnet.py` (dense 512).

The replay memory stores one encoded frame per step (10x10 cells for 'cells',
the 84x84 frame otherwise) and rebuilds the stacked states when sampling,
with zero frames before an episode's first step, exactly as the environment
stacks them. A frame cap that truncates an episode is stored as terminal, as
the published data stores it (Dopamine's runner does the same).
"""
import dataclasses
import json
import os
import shutil
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.agents.dqn import dqn_agent
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import common

from tf_offline_q import specs
from tf_offline_q.envs import minatar
from tf_offline_q.networks import convnet
from tf_offline_q.networks import q_network

AGENT_TYPES = ('dqn', 'c51', 'heuristic')
TORSOS = ('cells', 'small', 'nature')


# --------------------------------------------------------------------- torsos
class CellTorso(tf.keras.layers.Layer):
  """MinAtar cells: `[B, 84, 84, T]` frames (or `[B, 10, 10, T]` cells) -> `[B, 1024]`."""

  def __init__(self, filters: int = 16, **kwargs):
    super().__init__(**kwargs)
    self.conv = tf.keras.layers.Conv2D(filters, 3, strides=1, activation='relu',
                                       name='conv')
    self.flatten = tf.keras.layers.Flatten()

  def build(self, input_shape):
    side = (int(input_shape[1]), int(input_shape[2]))
    if side not in ((minatar.FRAME_SIDE,) * 2, (minatar.GRID,) * 2):
      raise ValueError(
          f"torso='cells' reads MinAtar frames of {minatar.FRAME_SIDE}x"
          f'{minatar.FRAME_SIDE} (or {minatar.GRID}x{minatar.GRID} cells); got '
          f"{side[0]}x{side[1]}: use torso='small' or 'nature' for other games.")
    super().build(input_shape)

  def call(self, observation, training=False):
    del training
    if observation.shape[1] == minatar.FRAME_SIDE:
      centre = minatar.BORDER + minatar.CELL // 2
      observation = observation[:, centre::minatar.CELL, centre::minatar.CELL][
          :, :minatar.GRID, :minatar.GRID]
    x = tf.cast(observation, tf.float32) / 255.0
    return self.flatten(self.conv(x))


class SmallConvTorso(tf.keras.layers.Layer):
  """NIPS-2013 DQN torso: `[B, 84, 84, T]` -> `[B, 2592]`."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.convs = [
        tf.keras.layers.Conv2D(16, 8, strides=4, activation='relu', name='conv1'),
        tf.keras.layers.Conv2D(32, 4, strides=2, activation='relu', name='conv2'),
    ]
    self.flatten = tf.keras.layers.Flatten()

  def call(self, observation, training=False):
    del training
    x = tf.cast(observation, tf.float32) / 255.0
    for conv in self.convs:
      x = conv(x)
    return self.flatten(x)


_TORSOS: Dict[str, Tuple[Callable[[], tf.keras.layers.Layer], Tuple[int, ...]]] = {
    'cells': (lambda: CellTorso(name='cells'), (128,)),
    'small': (lambda: SmallConvTorso(name='small_conv'), (256,)),
    'nature': (lambda: convnet.NatureConvNet(name='convnet'), ()),
}


def default_torso(game: str) -> str:
  """'cells' for MinAtar games, 'small' for the ALE."""
  return 'cells' if minatar.is_minatar_game(game) else 'small'


def encode_frames(frames: np.ndarray, torso: str) -> np.ndarray:
  """What the replay memory keeps of frames uint8 `[..., 84, 84]`.

  'cells': the 10x10 grey level grid `[..., 10, 10]` (lossless for MinAtar);
  otherwise the frames themselves.
  """
  if torso == 'cells':
    return minatar.read_cells(frames)
  return np.asarray(frames)


def encode_observation(observation: np.ndarray, torso: str) -> np.ndarray:
  """Stacked observation `[84, 84, T]` -> the network's input `[h, w, T]`."""
  if torso == 'cells':
    return np.moveaxis(minatar.read_cells(np.moveaxis(observation, -1, 0)), 0, -1)
  return observation


def encoded_frame_shape(frame_shape: Sequence[int], torso: str) -> Tuple[int, int]:
  if torso == 'cells':
    return (minatar.GRID, minatar.GRID)
  return tuple(frame_shape)


# ------------------------------------------------------------- replay memory
class ReplayMemory:
  """Uniform circular replay of single encoded frames, stacked on sampling.

  Index `i` holds the newest frame of the state `s_i` the action `a_i` was
  taken in, `r_i`, `terminal_i` and `step_i` (steps since the episode began).
  A sampled state is frames `i-T+1..i` with frames before the episode's start
  set to zero; its next state is frames `i-T+2..i+1` (only used when `i` is
  not terminal, so `i+1` is in the same episode). The newest index (no next
  frame yet) and, once the buffer has wrapped, the oldest `T-1` (their stacks
  are overwritten) are never sampled.
  """

  def __init__(self, capacity: int, frame_shape: Sequence[int], stack_size: int):
    if capacity < stack_size + 2:
      raise ValueError(f'replay capacity must be >= stack_size + 2, got {capacity}')
    self.capacity = int(capacity)
    self.stack_size = int(stack_size)
    self.frames = np.zeros((capacity,) + tuple(frame_shape), np.uint8)
    self.action = np.zeros((capacity,), np.int64)
    self.reward = np.zeros((capacity,), np.float32)
    self.terminal = np.zeros((capacity,), np.bool_)
    self.step = np.zeros((capacity,), np.int64)
    self.add_count = 0

  def __len__(self) -> int:
    return min(self.add_count, self.capacity)

  def add(self, frame, action, reward, terminal, step_in_episode):
    c = self.add_count % self.capacity
    self.frames[c] = frame
    self.action[c] = action
    self.reward[c] = reward
    self.terminal[c] = terminal
    self.step[c] = step_in_episode
    self.add_count += 1

  def num_sampleable(self) -> int:
    size = len(self)
    skip = self.stack_size - 1 if self.add_count > self.capacity else 0
    return max(0, size - 1 - skip)

  def _stack(self, newest: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """uint8 `[B, h, w, T]`: frames `newest-T+1..newest`, zero before step 0."""
    back = np.arange(self.stack_size - 1, -1, -1)           # T-1 ... 0
    idx = (newest[:, None] - back[None, :]) % self.capacity  # [B, T]
    stacked = self.frames[idx]                                # [B, T, h, w]
    stacked[back[None, :] > steps[:, None]] = 0
    return np.moveaxis(stacked, 1, -1)

  def sample(self, batch_size: int, rng: np.random.Generator):
    """`(s [B,h,w,T], a [B], r [B], terminal [B], s' [B,h,w,T])`."""
    i = self.sampleable_indices()
    if not len(i):
      raise ValueError('the replay memory has nothing to sample yet')
    return self.gather(i[rng.integers(0, len(i), size=batch_size)])

  def sampleable_indices(self) -> np.ndarray:
    """int64 storage indices `sample` draws from, oldest first."""
    oldest = self.add_count - len(self)
    skip = self.stack_size - 1 if self.add_count > self.capacity else 0
    return (oldest + skip + np.arange(self.num_sampleable())) % self.capacity

  def gather(self, i: np.ndarray):
    """The transitions at storage indices `i` [B], as `sample` returns them."""
    steps = self.step[i]
    state = self._stack(i, steps)
    next_state = self._stack((i + 1) % self.capacity, steps + 1)
    return state, self.action[i], self.reward[i], self.terminal[i], next_state

  def save(self, path: str):
    """Writes `path` (an `.npz`); the caller renames it into place."""
    size = len(self)
    with open(path, 'wb') as f:
      np.savez(f, frames=self.frames[:size], action=self.action[:size],
               reward=self.reward[:size], terminal=self.terminal[:size],
               step=self.step[:size], add_count=np.int64(self.add_count),
               capacity=np.int64(self.capacity))

  def restore(self, path: str):
    with np.load(path) as data:
      if int(data['capacity']) != self.capacity:
        raise ValueError(f'{path}: replay memory of capacity {int(data["capacity"])}, '
                         f'but --replay_capacity is {self.capacity}; resume with the '
                         'same setting')
      if data['frames'].shape[1:] != self.frames.shape[1:]:
        raise ValueError(f'{path}: frames {data["frames"].shape[1:]}, expected '
                         f'{self.frames.shape[1:]} (was --torso changed?)')
      size = len(data['action'])
      for name in ('frames', 'action', 'reward', 'terminal', 'step'):
        getattr(self, name)[:size] = data[name]
      self.add_count = int(data['add_count'])


# -------------------------------------------------------------------- agent
@dataclasses.dataclass
class AgentConfig:
  """Hyperparameters of the online agent (defaults: small and fast on MinAtar).

  Dopamine's DQN on Atari: update_period 4, target_update_period 2000 updates
  (8000 steps), min_replay_history 20000, epsilon_train 0.01 over 250000
  steps, RMSProp 2.5e-4, replay 1M, batch 32, gamma 0.99.
  """
  agent_type: str = 'dqn'
  torso: str = 'cells'
  learning_rate: float = 2.5e-4
  adam_epsilon: float = 3.125e-4
  gamma: float = 0.99
  batch_size: int = 32
  update_period: int = 4
  target_update_period: int = 250    # updates (1000 agent steps at period 4)
  min_replay_history: int = 2000
  epsilon_train: float = 0.05
  epsilon_decay_steps: int = 25_000
  replay_capacity: int = 100_000
  num_atoms: int = 51
  v_max: float = 10.0

  def check(self):
    if self.agent_type not in AGENT_TYPES:
      raise ValueError(f'agent_type must be one of {AGENT_TYPES}, got {self.agent_type!r}')
    if self.torso not in TORSOS:
      raise ValueError(f'torso must be one of {TORSOS}, got {self.torso!r}')
    if self.agent_type == 'heuristic' and self.torso != 'cells':
      raise ValueError("agent_type 'heuristic' reads MinAtar cells: it needs torso 'cells', "
                       f'got {self.torso!r}')
    for name in ('batch_size', 'update_period', 'target_update_period',
                 'epsilon_decay_steps', 'replay_capacity'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
    if not 0.0 <= self.epsilon_train <= 1.0:
      raise ValueError(f'epsilon_train must be in [0, 1], got {self.epsilon_train}')


def linearly_decaying_epsilon(step: int, config: AgentConfig) -> float:
  """Dopamine's schedule: 1 until `min_replay_history`, then linear to `epsilon_train`."""
  steps_left = config.epsilon_decay_steps + config.min_replay_history - step
  bonus = (1.0 - config.epsilon_train) * steps_left / config.epsilon_decay_steps
  return config.epsilon_train + float(np.clip(bonus, 0.0, 1.0 - config.epsilon_train))


class OnlineAgent:
  """TF-Agents DQN or C51 over encoded observations, with epsilon-greedy acting.

  `learns` is True: `play_iteration` calls `update` on replay batches.

  Args:
    frame_shape: the environment's frame `[84, 84]`.
    stack_size: frames per state.
    num_actions: size of the action set.
    config: `AgentConfig`.
    seed: seeds the network initialisation.
  """

  learns = True

  def __init__(self, frame_shape: Sequence[int], stack_size: int, num_actions: int,
               config: AgentConfig, seed: int = 0):
    config.check()
    if config.agent_type not in ('dqn', 'c51'):
      raise ValueError(f"OnlineAgent is a 'dqn' or 'c51' learner, got {config.agent_type!r} "
                       '(make_agent builds the heuristic one)')
    self.config = config
    self.num_actions = int(num_actions)
    tf.random.set_seed(seed)
    self.observation_spec = specs.observation_spec(
        encoded_frame_shape(frame_shape, config.torso), stack_size)
    action_spec = specs.action_spec(num_actions)
    time_step_spec = ts.time_step_spec(self.observation_spec)
    torso_fn, head_hidden = _TORSOS[config.torso]
    self.optimizer = tf.keras.optimizers.Adam(config.learning_rate,
                                              epsilon=config.adam_epsilon)
    self.train_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='train_step')
    if config.agent_type == 'dqn':
      # ActionLogitsNetwork emits [B, num_actions]: here, Q-values.
      net = q_network.ActionLogitsNetwork(self.observation_spec, action_spec,
                                          backbone=torso_fn, head_hidden=head_hidden,
                                          name='QNetwork')
      self.agent = dqn_agent.DqnAgent(
          time_step_spec, action_spec, q_network=net, optimizer=self.optimizer,
          target_update_period=config.target_update_period,
          td_errors_loss_fn=common.element_wise_huber_loss, gamma=config.gamma,
          train_step_counter=self.train_step)
    else:
      net = q_network.C51QNetwork(self.observation_spec, action_spec,
                                  backbone=torso_fn, head_hidden=head_hidden,
                                  num_atoms=config.num_atoms, name='C51QNetwork')
      self.agent = categorical_dqn_agent.CategoricalDqnAgent(
          time_step_spec, action_spec, categorical_q_network=net,
          optimizer=self.optimizer, min_q_value=-config.v_max,
          max_q_value=config.v_max, target_update_period=config.target_update_period,
          gamma=config.gamma, train_step_counter=self.train_step)
    self.agent.initialize()
    self._net = net
    self._support = tf.linspace(-config.v_max, config.v_max, config.num_atoms)
    self._train = tf.function(self.agent.train)
    self._greedy = tf.function(self._greedy_actions)
    self._greedy(tf.zeros((1,) + tuple(self.observation_spec.shape), tf.uint8))
    self.checkpoint = tf.train.Checkpoint(
        q_network=net, target_q_network=self.agent._target_q_network,  # pylint: disable=protected-access
        optimizer=self.optimizer, train_step=self.train_step)

  def q_values(self, observation):
    """float32 `[B, num_actions]` Q-values of encoded observations `[B, h, w, T]`."""
    outputs, _ = self._net(observation, training=False)
    if self.config.agent_type == 'c51':
      outputs = tf.reduce_sum(tf.nn.softmax(outputs) * self._support, axis=-1)
    return outputs

  def _greedy_actions(self, observation):
    return tf.argmax(self.q_values(observation), axis=-1, output_type=tf.int64)

  def act(self, observation: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Epsilon-greedy action for one encoded observation `[h, w, T]`."""
    if rng.random() < epsilon:
      return int(rng.integers(self.num_actions))
    return int(self._greedy(observation[None])[0])

  def update(self, state, action, reward, terminal, next_state) -> float:
    """One gradient step on a batch from `ReplayMemory.sample`; returns the loss."""
    b = len(action)
    mid = np.full((b, 2), int(ts.StepType.MID), np.int32)
    next_type = mid.copy()
    next_type[:, 0] = np.where(terminal, int(ts.StepType.LAST), int(ts.StepType.MID))
    experience = trajectory.Trajectory(
        step_type=mid,
        observation=np.stack([state, next_state], axis=1),
        action=np.stack([action, np.zeros_like(action)], axis=1),
        policy_info=(),
        next_step_type=next_type,
        reward=np.stack([np.clip(reward, -1.0, 1.0), np.zeros_like(reward)], axis=1),
        discount=np.stack([1.0 - terminal.astype(np.float32),
                           np.ones(b, np.float32)], axis=1))
    return float(self._train(experience).loss)


class HeuristicAgent:
  """Epsilon-greedy over a scripted policy instead of Q-values; it never learns.

  Same interface as `OnlineAgent` (`config`, `num_actions`, `act`,
  `checkpoint`, `learns`), so the generator, its run state and resuming are
  unchanged; the checkpoint holds nothing.

  Args:
    policy: `policy(cells uint8 [10, 10], rng) -> action index`, e.g.
      `minatar_heuristics.make_heuristic(game, env.action_set)`.
    num_actions: size of the action set.
    config: `AgentConfig` with `agent_type='heuristic'` (its epsilon schedule is used).
  """

  learns = False

  def __init__(self, policy: Callable[[np.ndarray, np.random.Generator], int],
               num_actions: int, config: AgentConfig):
    config.check()
    self.config = config
    self.num_actions = int(num_actions)
    self._policy = policy
    self.checkpoint = tf.train.Checkpoint()

  def act(self, observation: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Uniform with probability `epsilon`, else the policy on the newest cells of `[10, 10, T]`."""
    if rng.random() < epsilon:
      return int(rng.integers(self.num_actions))
    return int(self._policy(observation[..., -1], rng))

  def update(self, *batch) -> float:
    raise NotImplementedError('HeuristicAgent does not learn (learns is False)')


def make_agent(game: str, env, frame_shape: Sequence[int], stack_size: int,
               config: AgentConfig, seed: int = 0):
  """`OnlineAgent` for 'dqn' / 'c51', `HeuristicAgent` over `game`'s heuristic otherwise."""
  if config.agent_type == 'heuristic':
    from tf_offline_q.envs import minatar_heuristics  # pylint: disable=g-import-not-at-top
    return HeuristicAgent(minatar_heuristics.make_heuristic(game, env.action_set),
                          env.num_actions, config)
  return OnlineAgent(frame_shape, stack_size, env.num_actions, config, seed)


# ----------------------------------------------------------------- run state
def _latest_state_dir(agent_dir: str) -> Optional[str]:
  if not os.path.isdir(agent_dir):
    return None
  done = sorted((int(d.split('-')[1]), d) for d in os.listdir(agent_dir)
                if d.startswith('iteration-') and d.split('-')[1].isdigit())
  return os.path.join(agent_dir, done[-1][1]) if done else None


def save_state(agent_dir: str, iteration: int, agent: OnlineAgent, memory: ReplayMemory,
               state: dict):
  """Writes the agent after `iteration` completed iterations, atomically.

  Everything goes to `agent_dir/.tmp-iteration-N/` (network, target network
  and optimizer: a `tf.train.Checkpoint`; the replay memory: `memory.npz`;
  counters and RNG state: `state.json`), renamed to `iteration-N` when
  complete; older iterations are then deleted.
  """
  os.makedirs(agent_dir, exist_ok=True)
  final = os.path.join(agent_dir, f'iteration-{iteration}')
  tmp = os.path.join(agent_dir, f'.tmp-iteration-{iteration}')
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  agent.checkpoint.write(os.path.join(tmp, 'agent'))
  memory.save(os.path.join(tmp, 'memory.npz'))
  with open(os.path.join(tmp, 'state.json'), 'w') as f:
    json.dump(state, f)
  shutil.rmtree(final, ignore_errors=True)
  os.replace(tmp, final)
  for name in os.listdir(agent_dir):
    path = os.path.join(agent_dir, name)
    if name != os.path.basename(final) and name.startswith(('iteration-', '.tmp-')):
      shutil.rmtree(path, ignore_errors=True)


def restore_state(agent_dir: str, agent: OnlineAgent, memory: ReplayMemory,
                  check: Optional[Callable[[dict], None]] = None) -> Optional[dict]:
  """Restores the newest complete `save_state`; returns its state dict or None.

  `check(state)` runs before any weights are read (e.g. to name changed
  settings instead of failing on a checkpoint of another architecture).
  """
  path = _latest_state_dir(agent_dir)
  if path is None:
    return None
  state_file = os.path.join(path, 'state.json')
  try:
    with open(state_file) as f:
      state = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'{state_file}: unreadable agent state ({e}); delete {path} '
                     'to restart this game from its previous iteration') from e
  if check is not None:
    check(state)
  agent.checkpoint.read(os.path.join(path, 'agent')).assert_existing_objects_matched()
  memory.restore(os.path.join(path, 'memory.npz'))
  return state


def rng_from_state(bit_generator_state: Optional[dict], seed: int) -> np.random.Generator:
  rng = np.random.default_rng(seed)
  if bit_generator_state is not None:
    rng.bit_generator.state = bit_generator_state
  return rng


def iteration_seed(seed: int, iteration: int) -> int:
  """The environment's seed for an iteration (so a resumed run plays the same)."""
  return int(np.random.SeedSequence([int(seed), int(iteration)]).generate_state(1)[0])



# --------------------------------------------------------------------- play
@dataclasses.dataclass
class Counters:
  """What survives between iterations (saved in `state.json`)."""
  env_steps: int = 0
  episodes: int = 0
  updates: int = 0
  recent_returns: Tuple[float, ...] = ()


def play_iteration(env, agent: OnlineAgent, memory: ReplayMemory, rng: np.random.Generator,
                   counters: Counters, min_steps: int,
                   log_transition: Callable[[np.ndarray, int, float, bool], None],
                   clip_rewards: bool = True,
                   progress: Optional[Callable[[int, float, float], None]] = None,
                   recent: int = 20) -> dict:
  """Plays whole episodes, learning, until at least `min_steps` steps are done.

  As Dopamine's runner, an iteration ends at the end of an episode, so every
  iteration's checkpoint holds complete episodes and resuming needs no
  environment state. Each step calls `log_transition(frame [84, 84], action,
  reward, terminal)` with the newest frame of the state the action was taken
  in and the (clipped if `clip_rewards`) reward; the episode's last step is
  terminal whether it was a game over or the frame cap.

  Args:
    env: an unbatched `PyEnvironment` from `games.make_env`.
    agent, memory, rng: the learner, its replay memory and the acting RNG.
    counters: updated in place.
    min_steps: steps to play at least.
    log_transition: receives every transition, in order.
    clip_rewards: log rewards clipped to [-1, 1] (the agent always learns
      from clipped rewards).
    progress: called as `progress(steps_done, recent_return, epsilon)` about
      every 1000 steps.
    recent: episodes averaged in `recent_returns`.

  Returns:
    dict: steps, episodes, mean/min/max return of the episodes of this
    iteration, epsilon at its end, updates and mean loss.
  """
  config = agent.config
  torso = config.torso
  returns, losses = [], []
  recent_returns = list(counters.recent_returns)
  steps = 0
  epsilon = linearly_decaying_epsilon(counters.env_steps, config)
  while steps < min_steps:
    time_step = env.reset()
    episode_return, step_in_episode = 0.0, 0
    while True:
      epsilon = linearly_decaying_epsilon(counters.env_steps, config)
      observation = time_step.observation
      action = agent.act(encode_observation(observation, torso), epsilon, rng)
      next_step = env.step(np.int64(action))
      raw_reward = float(next_step.reward)
      episode_return += raw_reward
      ended = bool(next_step.is_last())
      frame = observation[..., -1]
      log_transition(frame, action,
                     float(np.clip(raw_reward, -1.0, 1.0)) if clip_rewards else raw_reward,
                     ended)
      if agent.learns:   # a heuristic agent never samples its memory
        memory.add(encode_frames(frame, torso), action, raw_reward, ended, step_in_episode)
      step_in_episode += 1
      steps += 1
      counters.env_steps += 1
      if (agent.learns and counters.env_steps >= config.min_replay_history and
          counters.env_steps % config.update_period == 0 and
          memory.num_sampleable() >= config.batch_size):
        losses.append(agent.update(*memory.sample(config.batch_size, rng)))
        counters.updates += 1
      if progress is not None and steps % 1000 == 0:
        progress(steps, float(np.mean(recent_returns)) if recent_returns else float('nan'),
                 epsilon)
      if ended:
        break
      time_step = next_step
    returns.append(episode_return)
    recent_returns = (recent_returns + [episode_return])[-recent:]
    counters.episodes += 1
  counters.recent_returns = tuple(recent_returns)
  return {
      'steps': steps,
      'episodes': len(returns),
      'mean_return': float(np.mean(returns)),
      'min_return': float(np.min(returns)),
      'max_return': float(np.max(returns)),
      'epsilon': float(epsilon),
      'updates': len(losses),
      'mean_loss': float(np.mean(losses)) if losses else None,
  }
