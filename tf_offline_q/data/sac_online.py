"""Online SAC on a continuous-control environment, recorded for offline datasets.

D4RL made its locomotion datasets from one online SAC run per environment:
`medium-replay` is that run's replay buffer up to the point where the policy
reached "medium" performance, `medium` are rollouts of that partly trained
policy, `expert` rollouts of a policy trained longer. `SacRun` is that run, in
TF-Agents: `SacAgent` (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications") with

  actor    an MLP (`hidden`, ReLU) to a tanh-squashed diagonal Gaussian
           (`TanhNormalProjectionNetwork`), actions in the spec's [-1, 1];
  critics  twin MLP critics Q_1, Q_2 over concat(s, a) with soft target
           copies (tau 0.005 every step);
  targets  y = r_scale * r + gamma * d' * (min_i Q_i'(s', a') - alpha log pi(a'|s')),
           a' ~ pi(.|s'), d' = 0 only at terminations (a time-limit
           truncation bootstraps);
  alpha    auto-tuned: min_alpha E[-alpha (log pi(a|s) + H_target)],
           H_target = -dim(A) / 2 (TF-Agents' default);
  Adam 3e-4 for actor, critics and alpha, batch 256, one gradient step per
  environment step after `initial_collect_steps` uniform-random steps.

These defaults are TF-Agents' SAC recipe (`examples/sac/haarnoja18`), including
its `reward_scale_factor` 0.1 and `initial_collect_steps` 1000 for Hopper.
Training batches are drawn uniformly from a TF-Agents `TFUniformReplayBuffer`
of `Transition`s (capacity `replay_capacity`).

Every transition the run plays is also appended, in order, to an on-disk log
(`TransitionLog`): the replay buffer as it was filled, never overwritten, from
which `medium-replay` is cut at any evaluation point.

Run directory layout (`run_dir`):
  state.json            env/train steps, episodes, log segments, the current
                        checkpoint, all evaluations, the configuration
  checkpoints/          agent (networks, optimizers, alpha, targets), replay
                        buffer and counters (`tf.train.CheckpointManager`)
  transitions/          segment_NNNNN.npz: the log (see `TransitionLog`)
  actors/               actor-<env_step>: actor weights at every evaluation
  learning_curve.csv    (and .json) env_step, train_step, eval return, recent
                        training return, wall time

Resumption: checkpoints, log segments and evaluations are taken only at
episode ends (and at the end of the step budget, where the episode in progress
is cut and recorded as truncated); every evaluation is also a checkpoint, so
each actor snapshot is a point where medium-replay can be cut. A checkpoint
writes log segment -> TF checkpoint -> state.json (atomic), in that order. A run killed at any moment restarts from the last
state.json: later log segments are deleted, the checkpoint named there is
restored, and play continues with a fresh episode at the checkpointed env
step. `train(num_env_steps)` on a finished run with a larger budget continues
it (how `expert` extends the run that `medium` stopped in).
"""
import csv
import io
import json
import os
import re
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf
from tf_agents.agents.ddpg import critic_network
from tf_agents.agents.sac import sac_agent
from tf_agents.agents.sac import tanh_normal_projection_network
from tf_agents.environments import py_environment
from tf_agents.networks import actor_distribution_network
from tf_agents.policies import actor_policy
from tf_agents.policies import greedy_policy
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import common

from tf_offline_q.data.minari_data import ContinuousEpisode
from tf_offline_q.files import atomic_write_text

STATE_FILE = 'state.json'
LEARNING_CURVE_CSV = 'learning_curve.csv'
LEARNING_CURVE_JSON = 'learning_curve.json'
REFERENCES_FILE = 'references.json'
_SEGMENT_RE = re.compile(r'^segment_(\d{5})\.npz$')


class SacConfig(NamedTuple):
  """Hyperparameters of the run (TF-Agents' SAC recipe by default).

  A resumed run must use the same configuration (`SacRun` checks it).
  """
  hidden: Sequence[int] = (256, 256)
  batch_size: int = 256
  learning_rate: float = 3e-4
  gamma: float = 0.99
  tau: float = 0.005
  reward_scale: float = 0.1
  target_entropy: Optional[float] = None  # None: -dim(A) / 2.
  initial_collect_steps: int = 1000
  replay_capacity: int = 1_000_000

  def validate(self) -> 'SacConfig':
    hidden = tuple(int(h) for h in self.hidden)
    if not hidden or min(hidden) < 1:
      raise ValueError(f'SacConfig.hidden must be positive layer widths, got {self.hidden!r}')
    for name in ('batch_size', 'replay_capacity'):
      if int(getattr(self, name)) < 1:
        raise ValueError(f'SacConfig.{name} must be >= 1, got {getattr(self, name)}')
    if self.initial_collect_steps < 0:
      raise ValueError('SacConfig.initial_collect_steps must be >= 0, got '
                       f'{self.initial_collect_steps}')
    if not self.learning_rate > 0:
      raise ValueError(f'SacConfig.learning_rate must be > 0, got {self.learning_rate}')
    if not 0.0 <= self.gamma <= 1.0:
      raise ValueError(f'SacConfig.gamma must be in [0, 1], got {self.gamma}')
    if not 0.0 < self.tau <= 1.0:
      raise ValueError(f'SacConfig.tau must be in (0, 1], got {self.tau}')
    return self._replace(hidden=hidden)

  def as_json(self) -> Dict[str, Any]:
    d = self._asdict()
    d['hidden'] = list(d['hidden'])
    return d


# ------------------------------------------------------------ networks/agent
def make_actor_network(observation_spec, action_spec, hidden: Sequence[int]):
  """MLP -> tanh-squashed diagonal Gaussian over the action spec."""
  return actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_spec, fc_layer_params=tuple(hidden),
      continuous_projection_net=(
          tanh_normal_projection_network.TanhNormalProjectionNetwork))


def make_sac_agent(time_step_spec, action_spec, config: SacConfig,
                   train_step_counter: Optional[tf.Variable] = None):
  """TF-Agents `SacAgent`; its second critic and both targets are copies."""
  critic = critic_network.CriticNetwork(
      (time_step_spec.observation, action_spec),
      joint_fc_layer_params=tuple(config.hidden),
      kernel_initializer='glorot_uniform',
      last_kernel_initializer='glorot_uniform')
  agent = sac_agent.SacAgent(
      time_step_spec, action_spec,
      critic_network=critic,
      actor_network=make_actor_network(time_step_spec.observation, action_spec,
                                       config.hidden),
      actor_optimizer=tf.keras.optimizers.Adam(config.learning_rate),
      critic_optimizer=tf.keras.optimizers.Adam(config.learning_rate),
      alpha_optimizer=tf.keras.optimizers.Adam(config.learning_rate),
      target_update_tau=config.tau,
      target_update_period=1,
      td_errors_loss_fn=tf.math.squared_difference,
      gamma=config.gamma,
      reward_scale_factor=config.reward_scale,
      target_entropy=config.target_entropy,
      train_step_counter=train_step_counter)
  agent.initialize()
  return agent


def load_actor_policy(run_dir: str, env_step: int, time_step_spec, action_spec,
                      greedy: bool):
  """The policy of the actor snapshot taken at `env_step` (a `TFPolicy`)."""
  state = read_state(run_dir)
  path = actor_snapshot_path(run_dir, env_step)
  if not tf.io.gfile.exists(path + '.index'):
    raise ValueError(f'No actor snapshot at env step {env_step} in {run_dir!r} '
                     f'(missing {path}.index); the run directory is incomplete')
  config = SacConfig(**state['config']).validate()
  actor = make_actor_network(time_step_spec.observation, action_spec, config.hidden)
  actor.create_variables()
  tf.train.Checkpoint(actor=actor).read(path).assert_existing_objects_matched()
  policy = actor_policy.ActorPolicy(time_step_spec, action_spec, actor, training=False)
  return greedy_policy.GreedyPolicy(policy) if greedy else policy


def actor_snapshot_path(run_dir: str, env_step: int) -> str:
  return os.path.join(run_dir, 'actors', f'actor-{int(env_step):09d}')


# -------------------------------------------------------------------- log
class TransitionLog:
  """Every transition of the run, in the order played, as .npz segments.

  A segment holds N transitions: observations [N, obs_dim], actions
  [N, act_dim], rewards [N], next_observations [N, obs_dim], terminations [N],
  truncations [N] (bool), and `first_env_step` (the run's env step before its
  first transition). Segments end at episode ends, so episodes never span a
  segment boundary that a restart could tear.
  """

  def __init__(self, directory: str):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)
    self._pending: Dict[str, List[np.ndarray]] = {k: [] for k in self._KEYS}

  _KEYS = ('observations', 'actions', 'rewards', 'next_observations', 'terminations',
           'truncations')

  def segment_path(self, index: int) -> str:
    return os.path.join(self.directory, f'segment_{index:05d}.npz')

  def segment_indices(self) -> List[int]:
    return sorted(int(m.group(1)) for m in map(_SEGMENT_RE.match, os.listdir(self.directory))
                  if m)

  def drop_segments_from(self, index: int) -> None:
    """Deletes segments >= `index` (written after the state a restart uses)."""
    for i in self.segment_indices():
      if i >= index:
        os.remove(self.segment_path(i))

  def append(self, observation, action, reward, next_observation, terminated, truncated):
    for key, value in zip(self._KEYS, (observation, action, reward, next_observation,
                                       terminated, truncated)):
      self._pending[key].append(value)

  @property
  def num_pending(self) -> int:
    return len(self._pending['rewards'])

  def flush(self, index: int, first_env_step: int) -> None:
    """Writes the pending transitions as segment `index` (temp file + rename)."""
    if not self.num_pending:
      return
    arrays = {
        'observations': np.asarray(self._pending['observations'], np.float32),
        'actions': np.asarray(self._pending['actions'], np.float32),
        'rewards': np.asarray(self._pending['rewards'], np.float32),
        'next_observations': np.asarray(self._pending['next_observations'], np.float32),
        'terminations': np.asarray(self._pending['terminations'], bool),
        'truncations': np.asarray(self._pending['truncations'], bool),
        'first_env_step': np.int64(first_env_step),
    }
    if not (arrays['terminations'][-1] or arrays['truncations'][-1]):
      raise RuntimeError('TransitionLog.flush must be called at an episode end')
    path = self.segment_path(index)
    fd, tmp = tempfile.mkstemp(dir=self.directory, prefix='.segment.', suffix='.tmp')
    try:
      with os.fdopen(fd, 'wb') as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise
    self._pending = {k: [] for k in self._KEYS}

  def read_segment(self, index: int) -> Dict[str, np.ndarray]:
    path = self.segment_path(index)
    try:
      with np.load(path) as data:
        arrays = {k: data[k] for k in self._KEYS + ('first_env_step',)}
    except (OSError, ValueError, KeyError) as e:
      raise ValueError(f'Transition log segment {path!r} is unreadable or incomplete ({e}); '
                       'delete the run directory and train again') from e
    n = len(arrays['rewards'])
    for key in self._KEYS:
      if len(arrays[key]) != n:
        raise ValueError(f'Transition log segment {path!r}: field {key!r} has '
                         f'{len(arrays[key])} rows, rewards has {n}')
    return arrays

  def episodes(self, num_segments: int, stop_env_step: Optional[int] = None
               ) -> Iterator[ContinuousEpisode]:
    """The episodes of segments [0, num_segments), in order, up to `stop_env_step`.

    Raises:
      ValueError: a missing or torn segment, a gap in env steps, observations
        that do not chain (next_observations[t] != observations[t + 1] inside an
        episode), or `stop_env_step` inside an episode.
    """
    env_step = 0
    for index in range(num_segments):
      if not os.path.exists(self.segment_path(index)):
        raise ValueError(f'Transition log segment {self.segment_path(index)!r} is missing')
      seg = self.read_segment(index)
      if int(seg['first_env_step']) != env_step:
        raise ValueError(f'Transition log segment {self.segment_path(index)!r} starts at env '
                         f'step {int(seg["first_env_step"])}, expected {env_step}')
      ends = np.flatnonzero(seg['terminations'] | seg['truncations'])
      start = 0
      for end in ends:
        if stop_env_step is not None and env_step >= stop_env_step:
          return
        if stop_env_step is not None and env_step + end + 1 - start > stop_env_step:
          raise ValueError(f'stop_env_step {stop_env_step} falls inside an episode '
                           f'(env steps {env_step} to {env_step + end + 1 - start})')
        sl = slice(start, end + 1)
        obs = seg['observations'][sl]
        nxt = seg['next_observations'][sl]
        if not np.array_equal(obs[1:], nxt[:-1]):
          raise ValueError(f'Transition log segment {self.segment_path(index)!r}: observations '
                           f'do not chain inside the episode at env step {env_step}')
        yield ContinuousEpisode(
            observations=np.concatenate([obs, nxt[-1:]], axis=0),
            actions=seg['actions'][sl], rewards=seg['rewards'][sl],
            terminations=seg['terminations'][sl], truncations=seg['truncations'][sl])
        env_step += end + 1 - start
        start = end + 1
      if start != len(seg['rewards']):
        raise ValueError(f'Transition log segment {self.segment_path(index)!r} ends inside '
                         'an episode')


# -------------------------------------------------------------- rollouts
def step_flags(next_time_step) -> tuple:
  """(terminated, truncated) of a TF-Agents time step.

  LAST with discount 0 is a termination (the task ended); LAST with a
  non-zero discount is a time-limit truncation.
  """
  if not next_time_step.is_last():
    return False, False
  terminated = float(next_time_step.discount) == 0.0
  return terminated, not terminated


def uniform_action_fn(action_spec, rng: np.random.Generator) -> Callable:
  """Uniform actions within the spec's bounds."""
  low = np.broadcast_to(action_spec.minimum, action_spec.shape).astype(np.float32)
  high = np.broadcast_to(action_spec.maximum, action_spec.shape).astype(np.float32)
  return lambda time_step: rng.uniform(low, high).astype(np.float32)


def policy_action_fn(policy) -> Callable:
  """Actions [act_dim] of a stateless TF policy for unbatched numpy time steps.

  One compiled call per step on a batch of one (half the overhead of
  `PyTFEagerPolicy`, which converts nests in Python).
  """
  spec = policy.time_step_spec

  @common.function(input_signature=[tf.nest.map_structure(
      lambda s: tf.TensorSpec(s.shape, s.dtype), spec)])
  def act(time_step):
    batched = tf.nest.map_structure(lambda x: x[None], time_step)
    return policy.action(batched).action[0]

  def action_fn(time_step):
    return act(tf.nest.map_structure(np.asarray, time_step)).numpy()
  return action_fn


def rollout(env: py_environment.PyEnvironment, action_fn: Callable,
            num_steps: Optional[int] = None, num_episodes: Optional[int] = None,
            log_interval: Optional[int] = None, print_fn: Callable[[str], None] = print,
            label: str = 'rollout') -> List[ContinuousEpisode]:
  """Plays `action_fn` for exactly `num_steps` steps or `num_episodes` episodes.

  With `num_steps` the episode in progress when the budget runs out is kept,
  cut there and marked truncated (as D4RL's fixed-size datasets are).
  `log_interval` (steps) prints progress lines with rate and ETA.
  """
  if (num_steps is None) == (num_episodes is None):
    raise ValueError('rollout needs exactly one of num_steps and num_episodes')
  if (num_steps or num_episodes) < 1:
    raise ValueError(f'rollout budget must be >= 1, got {num_steps or num_episodes}')
  episodes: List[ContinuousEpisode] = []
  steps = 0
  start = time.time()
  while True:
    time_step = env.reset()
    obs, acts, rews, terms, truncs = [np.asarray(time_step.observation, np.float32)], [], [], [], []
    while True:
      action = action_fn(time_step)
      time_step = env.step(action)
      steps += 1
      terminated, truncated = step_flags(time_step)
      if num_steps is not None and steps == num_steps and not terminated:
        truncated = True
      if log_interval and steps % log_interval == 0:
        rate = steps / max(time.time() - start, 1e-9)
        recent = [e.episode_return for e in episodes[-10:]]
        budget = (f'{steps}/{num_steps} steps  ETA {_format_duration((num_steps - steps) / rate)}'
                  if num_steps else f'{steps} steps, {len(episodes)}/{num_episodes} episodes')
        print_fn(f'{label}: {budget}  {rate:.0f} steps/s  return (last {len(recent)}) '
                 f'{np.mean(recent) if recent else float("nan"):.1f}')
      obs.append(np.asarray(time_step.observation, np.float32))
      acts.append(action)
      rews.append(float(time_step.reward))
      terms.append(terminated)
      truncs.append(truncated)
      if terminated or truncated:
        break
    episodes.append(ContinuousEpisode(np.stack(obs), np.stack(acts).astype(np.float32),
                            np.asarray(rews, np.float32), np.asarray(terms, bool),
                            np.asarray(truncs, bool)))
    if (num_steps is not None and steps >= num_steps) or (
        num_episodes is not None and len(episodes) >= num_episodes):
      return episodes


# ------------------------------------------------------------------ state
def read_state(run_dir: str) -> Dict[str, Any]:
  path = os.path.join(run_dir, STATE_FILE)
  if not os.path.exists(path):
    raise ValueError(f'{path!r} does not exist: no SAC run in {run_dir!r} (train it first)')
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path!r} is not valid JSON ({e})') from e


def write_learning_curve(run_dir: str, evals: List[Dict[str, Any]]) -> None:
  fields = ['env_step', 'train_step', 'eval_return', 'eval_return_std', 'eval_episodes',
            'train_return_recent', 'wall_seconds']
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=fields, extrasaction='ignore')
  writer.writeheader()
  writer.writerows(evals)
  atomic_write_text(os.path.join(run_dir, LEARNING_CURVE_CSV), out.getvalue())
  atomic_write_text(os.path.join(run_dir, LEARNING_CURVE_JSON),
                    json.dumps(evals, indent=1) + '\n')


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# -------------------------------------------------------------------- run
class SacRun:
  """One resumable online SAC run on `env_fn(seed)`'s environment (see module doc).

  Args:
    run_dir: where everything of the run lives (created).
    env_fn: seed -> an unbatched `PyEnvironment` with float32 observations and
      float32 actions (bounded); called for training and for evaluation.
    env_name: recorded in state.json; a resumed run must have the same.
    config: `SacConfig`; a resumed run must have the same.
    seed: seeds TensorFlow, the uniform initial actions and the environments.
    eval_interval: env steps between evaluations (each at the first episode
      end past the interval); each also snapshots the actor.
    eval_episodes: greedy episodes per evaluation.
    checkpoint_interval: env steps between checkpoints (at episode ends).
    log_interval: env steps between progress lines.
    print_fn: where progress lines go.
  """

  def __init__(self, run_dir: str, env_fn: Callable[[int], py_environment.PyEnvironment],
               env_name: str, config: SacConfig = SacConfig(), seed: int = 0,
               eval_interval: int = 10_000, eval_episodes: int = 5,
               checkpoint_interval: int = 10_000, log_interval: int = 1000,
               print_fn: Callable[[str], None] = print):
    for name, value in (('eval_interval', eval_interval), ('eval_episodes', eval_episodes),
                        ('checkpoint_interval', checkpoint_interval),
                        ('log_interval', log_interval)):
      if value < 1:
        raise ValueError(f'{name} must be >= 1, got {value}')
    self.run_dir = run_dir
    self.config = config.validate()
    self.env_name = env_name
    self.seed = seed
    self.eval_interval = eval_interval
    self.eval_episodes = eval_episodes
    self.checkpoint_interval = checkpoint_interval
    self.log_interval = log_interval
    self._print = print_fn
    self._env_fn = env_fn
    os.makedirs(run_dir, exist_ok=True)
    self.log = TransitionLog(os.path.join(run_dir, 'transitions'))

    self.state = self._initial_state()
    state_path = os.path.join(run_dir, STATE_FILE)
    if os.path.exists(state_path):
      saved = read_state(run_dir)
      self._check_compatible(saved, state_path)
      self.state = saved
    self.log.drop_segments_from(self.state['num_segments'])

    tf.random.set_seed(seed + self.state["env_step"])
    self._rng = np.random.default_rng([seed, self.state['env_step']])
    # The environment is reseeded on every (re)start so that a resumed run
    # does not replay the episodes it already played.
    self.env = env_fn(seed * 100_003 + self.state['env_step'])
    self._eval_env = None
    self._build_agent()
    if self.state['checkpoint']:
      self._ckpt.read(self.state['checkpoint']).assert_existing_objects_matched()
      if int(self._env_step_var.numpy()) != self.state['env_step']:
        raise ValueError(f'{state_path!r} says env step {self.state["env_step"]} but its '
                         f'checkpoint holds {int(self._env_step_var.numpy())}')

  # -- set-up
  def _initial_state(self) -> Dict[str, Any]:
    return {'env_name': self.env_name, 'config': self.config.as_json(), 'seed': self.seed,
            'env_step': 0, 'train_step': 0, 'episodes': 0, 'num_segments': 0,
            'checkpoint': None, 'evals': [], 'wall_seconds': 0.0, 'recent_returns': []}

  def _check_compatible(self, saved, state_path):
    if saved.get('env_name') != self.env_name:
      raise ValueError(f'{state_path!r} is a run on {saved.get("env_name")!r}, not '
                       f'{self.env_name!r}; use another run directory')
    if saved.get('config') != self.config.as_json():
      diff = {k: (saved.get('config', {}).get(k), v) for k, v in self.config.as_json().items()
              if saved.get('config', {}).get(k) != v}
      raise ValueError(f'{state_path!r} was trained with another configuration '
                       f'(saved, requested): {diff}; resume with the same flags or use '
                       'another run directory')

  def _build_agent(self):
    spec_env = self.env
    obs_spec = spec_env.observation_spec()
    act_spec = spec_env.action_spec()
    if np.dtype(obs_spec.dtype) != np.float32 or np.dtype(act_spec.dtype) != np.float32:
      raise ValueError(f'{self.env_name}: SAC needs float32 observations and actions, got '
                       f'{obs_spec} and {act_spec}')
    self.time_step_spec = tensor_spec.from_spec(spec_env.time_step_spec())
    self.action_spec = tensor_spec.from_spec(act_spec)
    self._train_step = tf.Variable(0, dtype=tf.int64, name='train_step')
    self._env_step_var = tf.Variable(0, dtype=tf.int64, name='env_step')
    self.agent = make_sac_agent(self.time_step_spec, self.action_spec, self.config,
                                self._train_step)
    self.replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
        self.agent.data_context.transition_spec, batch_size=1,
        max_length=self.config.replay_capacity)
    self._ckpt = tf.train.Checkpoint(agent=self.agent, replay_buffer=self.replay_buffer,
                                     env_step=self._env_step_var)
    self._ckpt_manager = tf.train.CheckpointManager(
        self._ckpt, os.path.join(self.run_dir, 'checkpoints'), max_to_keep=2)
    self._collect = policy_action_fn(self.agent.collect_policy)
    self._greedy = policy_action_fn(self.agent.policy)
    self._add = common.function(self._add_transition)
    self._iterator = None
    self._train_fn = common.function(self._train_from_iterator)

  def _add_transition(self, transition):
    self.replay_buffer.add_batch(transition)

  def _train_from_iterator(self, iterator):
    experience, _ = next(iterator)
    return self.agent.train(experience).loss

  # -- properties
  def make_env(self, seed: int) -> py_environment.PyEnvironment:
    """A new environment of the run's kind."""
    return self._env_fn(seed)

  @property
  def env_step(self) -> int:
    return self.state['env_step']

  @property
  def evals(self) -> List[Dict[str, Any]]:
    return self.state['evals']

  # -- training
  def _transition(self, time_step, action, next_time_step):
    batch = lambda x: tf.nest.map_structure(lambda a: np.asarray(a)[None], x)
    return trajectory.Transition(
        time_step=batch(time_step),
        action_step=policy_step.PolicyStep(action=action[None], state=(), info=()),
        next_time_step=batch(next_time_step))

  def _train_once(self):
    if self._iterator is None:
      # as_dataset calls TF-Agents' own deprecated get_next; its warning is
      # not for our users.
      logger = tf.get_logger()
      level = logger.level
      logger.setLevel('ERROR')
      try:
        dataset = self.replay_buffer.as_dataset(
            sample_batch_size=self.config.batch_size, num_parallel_calls=1).prefetch(2)
      finally:
        logger.setLevel(level)
      self._iterator = iter(dataset)
    return float(self._train_fn(self._iterator))

  def evaluate(self) -> Dict[str, Any]:
    """Greedy episodes now; snapshots the actor; returns the record."""
    if self._eval_env is None:
      self._eval_env = self._env_fn(self.seed * 100_003 + 50_000_017)
    episodes = rollout(self._eval_env, self._greedy, num_episodes=self.eval_episodes)
    returns = [e.episode_return for e in episodes]
    tf.train.Checkpoint(actor=self.agent._actor_network).write(  # pylint: disable=protected-access
        actor_snapshot_path(self.run_dir, self.env_step))
    recent = self.state['recent_returns']
    return {'env_step': self.env_step, 'train_step': int(self._train_step.numpy()),
            'eval_return': float(np.mean(returns)), 'eval_return_std': float(np.std(returns)),
            'eval_episodes': len(returns),
            'train_return_recent': float(np.mean(recent)) if recent else float('nan'),
            'wall_seconds': round(self.state['wall_seconds'], 1)}

  def _checkpoint(self):
    """log segment -> TF checkpoint -> state.json (the commit point)."""
    self.log.flush(self.state['num_segments'], self._segment_start)
    if self.env_step > self._segment_start:
      self.state['num_segments'] += 1
    self._segment_start = self.env_step
    self._env_step_var.assign(self.env_step)
    self.state['train_step'] = int(self._train_step.numpy())
    self.state['checkpoint'] = self._ckpt_manager.save(checkpoint_number=self.env_step)
    atomic_write_text(os.path.join(self.run_dir, STATE_FILE),
                      json.dumps(self.state, indent=1) + '\n')

  def train(self, num_env_steps: int) -> Dict[str, Any]:
    """Plays and trains until the run has taken `num_env_steps` env steps.

    Returns the state (also in state.json). A run already at or past the
    budget does nothing.
    """
    if num_env_steps < 1:
      raise ValueError(f'num_env_steps must be >= 1, got {num_env_steps}')
    state = self.state
    if state['env_step'] >= num_env_steps:
      self._print(f'SAC run {self.run_dir}: already at env step {state["env_step"]} '
                  f'(budget {num_env_steps}); nothing to train')
      return state
    if state['env_step']:
      self._print(f'SAC run {self.run_dir}: resumed at env step {state["env_step"]} '
                  f'(train step {state["train_step"]}, {state["episodes"]} episodes)')
    cfg = self.config
    self._segment_start = state['env_step']
    next_eval = (state['env_step'] // self.eval_interval + 1) * self.eval_interval
    next_ckpt = (state['env_step'] // self.checkpoint_interval + 1) * self.checkpoint_interval
    log_steps, log_time, last_wall = state['env_step'], time.time(), time.time()
    next_log = (state['env_step'] // self.log_interval + 1) * self.log_interval
    random_action = uniform_action_fn(self.env.action_spec(), self._rng)
    time_step, episode_return = self.env.reset(), 0.0
    while state['env_step'] < num_env_steps:
      if state['env_step'] < cfg.initial_collect_steps:
        action = random_action(time_step)
      else:
        action = self._collect(time_step)
      next_time_step = self.env.step(action)
      state['env_step'] += 1
      terminated, truncated = step_flags(next_time_step)
      budget_end = state['env_step'] == num_env_steps
      if budget_end and not terminated:
        truncated = True
      self._add(self._transition(time_step, action, next_time_step))
      self.log.append(np.asarray(time_step.observation, np.float32), action,
                      float(next_time_step.reward),
                      np.asarray(next_time_step.observation, np.float32), terminated, truncated)
      episode_return += float(next_time_step.reward)
      if (state['env_step'] >= cfg.initial_collect_steps and
          state['env_step'] >= cfg.batch_size):
        self._train_once()
      time_step = next_time_step
      if state['env_step'] >= next_log:
        next_log += self.log_interval
        now = time.time()
        # The rate over the last interval: the uniform initial steps are much
        # faster than training ones and would make a cumulative ETA optimistic.
        rate = (state["env_step"] - log_steps) / max(now - log_time, 1e-9)
        log_steps, log_time = state["env_step"], now
        recent = state['recent_returns']
        last_eval = state['evals'][-1]['eval_return'] if state['evals'] else float('nan')
        self._print(
            f'env step {state["env_step"]}/{num_env_steps} '
            f'({100 * state["env_step"] / num_env_steps:.1f}%)  {rate:.0f} steps/s  '
            f'train return (last {len(recent)}) '
            f'{np.mean(recent) if recent else float("nan"):.1f}  eval {last_eval:.1f}  '
            f'ETA {_format_duration((num_env_steps - state["env_step"]) / max(rate, 1e-9))}')
      if not (terminated or truncated):
        continue
      state['episodes'] += 1
      state['recent_returns'] = (state['recent_returns'] + [round(episode_return, 3)])[-10:]
      now = time.time()
      state['wall_seconds'] += now - last_wall
      last_wall = now
      evaluated = state['env_step'] >= next_eval or budget_end
      if evaluated:
        record = self.evaluate()
        state['evals'].append(record)
        next_eval = (state['env_step'] // self.eval_interval + 1) * self.eval_interval
        self._print(f'eval at env step {state["env_step"]}: return {record["eval_return"]:.1f} '
                    f'+- {record["eval_return_std"]:.1f} ({record["eval_episodes"]} episodes)')
      # Every evaluation is committed with a checkpoint, so that each actor
      # snapshot is a point where medium-replay can be cut.
      if evaluated or state['env_step'] >= next_ckpt:
        self._checkpoint()
        if evaluated:
          write_learning_curve(self.run_dir, state['evals'])
        next_ckpt = (state['env_step'] // self.checkpoint_interval + 1) * self.checkpoint_interval
      time_step, episode_return = self.env.reset(), 0.0
    return state

  def close(self):
    self.env.close()
    if self._eval_env is not None:
      self._eval_env.close()


# ------------------------------------------------------------- references
def measure_references(run: SacRun, ref_episodes: int, seed: int) -> Dict[str, Any]:
  """Our reference returns for D4RL normalisation, measured once and cached.

  ref_min_score: mean return of uniform random actions; ref_max_score: mean
  return of the run's final policy acting greedily; each over `ref_episodes`
  episodes of a fresh environment. Cached in RUN_DIR/references.json, keyed
  on the run's env step, `ref_episodes` and `seed`.
  """
  path = os.path.join(run.run_dir, REFERENCES_FILE)
  key = {'expert_env_step': run.env_step, 'ref_episodes': ref_episodes, 'seed': seed}
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if all(cached.get(k) == v for k, v in key.items()):
      return cached
  env = run.make_env(seed * 100_003 + 7_000_001)
  try:
    rng = np.random.default_rng([seed, 1])
    random_returns = [e.episode_return for e in rollout(
        env, uniform_action_fn(env.action_spec(), rng), num_episodes=ref_episodes)]
    policy = load_actor_policy(run.run_dir, run.env_step, run.time_step_spec,
                               run.action_spec, greedy=True)
    expert_returns = [e.episode_return for e in rollout(
        env, policy_action_fn(policy), num_episodes=ref_episodes)]
  finally:
    env.close()
  refs = dict(key, ref_min_score=float(np.mean(random_returns)),
              ref_min_std=float(np.std(random_returns)),
              ref_max_score=float(np.mean(expert_returns)),
              ref_max_std=float(np.std(expert_returns)),
              note=(f'our own references for {run.env_name} (gymnasium), not D4RL\'s: '
                    'random = uniform actions, expert = the final SAC policy, greedy'))
  atomic_write_text(path, json.dumps(refs, indent=1) + '\n')
  return refs


def medium_snapshot(evals: Sequence[Dict[str, Any]], refs: Dict[str, Any],
                    medium_fraction: float = 1 / 3,
                    medium_return: Optional[float] = None) -> tuple:
  """(env_step, threshold): the first evaluation reaching "medium" (D4RL's ~1/3 of expert).

  The threshold is ref_min + medium_fraction * (ref_max - ref_min) (a
  normalised score of 100 * medium_fraction), or `medium_return` if given.

  Raises:
    ValueError: no evaluation reached it (names the best one).
  """
  if medium_return is not None:
    threshold = float(medium_return)
  else:
    threshold = refs['ref_min_score'] + medium_fraction * (
        refs['ref_max_score'] - refs['ref_min_score'])
  for record in evals:
    if record['eval_return'] >= threshold:
      return record['env_step'], threshold
  best = max(evals, key=lambda r: r['eval_return']) if evals else None
  raise ValueError(
      f'No evaluation of the SAC run reached the medium return {threshold:.1f} (best: '
      f'{best and round(best["eval_return"], 1)} at env step {best and best["env_step"]}); '
      'lower --medium_fraction / --medium_return or train longer (--expert_steps)')
