"""Continuous control as TF-Agents `PyEnvironment`s: MuJoCo locomotion, PointMaze, Fetch.

Environments (canonical names, `ENV_NAMES`):

  * gymnasium MuJoCo `Hopper-v5`, `Walker2d-v5`, `HalfCheetah-v5`;
  * Gymnasium-Robotics `PointMaze_{UMaze,Medium,Large}-v3` and their `...Dense-v3`
    variants (the D4RL maze2d family);
  * Gymnasium-Robotics `FetchPush-v4`, `FetchPickAndPlace-v4` (Q-Transformer's
    sparse-reward manipulation).

Every environment has the same interface:

  * observation: float32 `[obs_dim]` (spec name 'observation'). Goal-conditioned
    dict observations (PointMaze, Fetch) are flattened as
    `concat(observation, desired_goal)` (`FLATTEN_ORDER`).
    `achieved_goal` is dropped because it is already inside `observation`
    (PointMaze: the ball's x, y = `observation[0:2]`; Fetch: the object
    position = `observation[3:6]`), so keeping it would only duplicate inputs.
    obs_dim: Hopper 11, Walker2d 17, HalfCheetah 17, PointMaze 4 + 2 = 6
    (x, y, vx, vy, goal_x, goal_y), Fetch 25 + 3 = 28.
  * action: float32 `[act_dim]` in [-1, 1] (a `BoundedArraySpec`, name 'action').
    It is mapped affinely to the gymnasium action bounds
    (`low + (a + 1) / 2 * (high - low)`; the identity for all environments
    here, whose bounds are already [-1, 1]). Actions slightly outside [-1, 1]
    (e.g. Gaussian exploration noise) are clipped; an action of the wrong
    shape or with NaN / inf values is a `ValueError` naming the environment.
  * episode ends: a task end (`terminated`: Hopper / Walker2d falling; Fetch
    success, see below) is a terminal `LAST` step with discount 0; gymnasium's
    registered time limit (`truncated`: 1000 MuJoCo steps, maze 300/600/800,
    Fetch 50) is a truncation, a `LAST` step with discount 1.
    The `step()` after a `LAST` step resets (TF-Agents auto-reset).
  * rewards: float32, the environment's own, except Fetch.
  * seeding: `seed` seeds the first reset (`gym.Env.reset(seed=seed)`);
    later resets continue that random stream, so one seed fixes a whole
    sequence of episodes. `seed(s)` re-seeds at the next reset.

PointMaze: gymnasium-robotics' defaults (`continuing_task=True`,
`reset_target=False`): the episode does not end at the goal; sparse reward is
1 for every step within 0.45 of the goal (dense: exp(-distance)); the goal and
start cells are drawn at random at each reset. This is D4RL maze2d's evaluation
setting, and a policy is evaluated on the return of these episodes.

Fetch: the sparse -1/0 reward of gymnasium-robotics (-1 until the object is
within 5 cm of the goal) is converted to 0/1: reward 1.0 exactly when
`info['is_success']`. With `terminate_on_success=True` (the default) the
first successful step also ends the episode as a terminal step, so an
episode's return is 1 (success) or 0 (failure) and Monte-Carlo returns stay in
[0, 1], as Q-Transformer's sigmoid Q-values assume. `terminate_on_success=False`
keeps gymnasium's continuing task (reward 1 on every successful step).

`last_episode` reports the finished episode's return, steps, whether it was
truncated and whether it ever succeeded (`success`: the maze / Fetch success
flag; always False for MuJoCo).

Example:

  env = make_continuous_env('PointMaze_UMaze-v3', seed=0)
  time_step = env.reset()                        # observation float32 [6]
  time_step = env.step(np.zeros(2, np.float32))  # reward float32 []
"""
from typing import Any, Dict, List, Mapping, Optional

import gymnasium as gym
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

MUJOCO_ENVS = ('Hopper-v5', 'Walker2d-v5', 'HalfCheetah-v5')
MAZE_ENVS = tuple(f'PointMaze_{size}{dense}-v3'
                  for size in ('UMaze', 'Medium', 'Large')
                  for dense in ('', 'Dense'))
FETCH_ENVS = ('FetchPush-v4', 'FetchPickAndPlace-v4')
ENV_NAMES = MUJOCO_ENVS + MAZE_ENVS + FETCH_ENVS

# Keys of a goal-conditioned dict observation, in the order they are
# concatenated into the flat observation.
FLATTEN_ORDER = ('observation', 'desired_goal')

# Atari-only keyword arguments of `games.make_env` that `make_env` accepts and
# ignores for continuous environments (see `games.make_env`).
ATARI_ONLY_ARGS = ('sticky_action_prob', 'full_action_space',
                   'max_episode_frames', 'stack_size')


def _squash(name: str) -> str:
  return ''.join(c for c in name.lower() if c.isalnum())


def _aliases() -> Dict[str, str]:
  """squashed alias -> canonical name; aliases with and without the version."""
  table = {}
  for name in ENV_NAMES:
    table[_squash(name)] = name
    table[_squash(name.rsplit('-v', 1)[0])] = name
  return table


_ALIASES = _aliases()


def is_continuous_env(name: Any) -> bool:
  """Whether `name` names one of `ENV_NAMES` (case, '-', '_', version optional)."""
  return isinstance(name, str) and _squash(name) in _ALIASES


def canonical_env_name(name: str) -> str:
  """'hopper' -> 'Hopper-v5', 'pointmaze-umaze' -> 'PointMaze_UMaze-v3', ...

  Raises:
    ValueError: naming `name` and listing `ENV_NAMES`.
  """
  if not is_continuous_env(name):
    raise ValueError(f'Unknown continuous-control environment {name!r}; valid: '
                     f'{", ".join(ENV_NAMES)}')
  return _ALIASES[_squash(name)]


def env_family(name: str) -> str:
  """'mujoco', 'maze' or 'fetch'."""
  name = canonical_env_name(name)
  if name in MUJOCO_ENVS:
    return 'mujoco'
  return 'maze' if name in MAZE_ENVS else 'fetch'


_ROBOTICS_REGISTERED = False


def register_robotics():
  """Registers Gymnasium-Robotics' environments once.

  (Its notice about AdroitHand rewards is not printed: setup.py pins
  farama-notifications 0.0.4, which carries no notices; see `console`.)
  """
  global _ROBOTICS_REGISTERED
  if not _ROBOTICS_REGISTERED:
    import gymnasium_robotics  # pylint: disable=g-import-not-at-top
    gym.register_envs(gymnasium_robotics)
    _ROBOTICS_REGISTERED = True


def make_gym_env(name: str, **gym_kwargs) -> gym.Env:
  """The gymnasium environment behind `name` (with its TimeLimit)."""
  name = canonical_env_name(name)
  if env_family(name) != 'mujoco':
    register_robotics()
  return gym.make(name, **gym_kwargs)


def rescale_action(action: np.ndarray, low: np.ndarray,
                   high: np.ndarray) -> np.ndarray:
  """Maps an action in [-1, 1] affinely onto [low, high]: -1 -> low, 1 -> high."""
  return low + (np.asarray(action, np.float64) + 1.0) * 0.5 * (high - low)


class ContinuousEnvironment(py_environment.PyEnvironment):
  """A gymnasium continuous-control environment with the interface of the module docstring.

  Args:
    name: one of `ENV_NAMES` (any spelling `canonical_env_name` accepts).
    seed: seed of the first reset (None: entropy).
    terminate_on_success: Fetch only: end the episode (terminal) at the first
      success. Default True for Fetch; must be None or False for the others.
    gym_kwargs: extra keyword arguments of `gym.make` (e.g. PointMaze's
      `max_episode_steps`, `reward_type`).
  """

  def __init__(self, name: str, seed: Optional[int] = None,
               terminate_on_success: Optional[bool] = None,
               gym_kwargs: Optional[Mapping[str, Any]] = None):
    super().__init__(handle_auto_reset=True)
    self._name = canonical_env_name(name)
    self._family = env_family(self._name)
    if terminate_on_success is None:
      terminate_on_success = self._family == 'fetch'
    if terminate_on_success and self._family != 'fetch':
      raise ValueError(f'terminate_on_success is only for Fetch environments, '
                       f'not {self._name}')
    self._terminate_on_success = bool(terminate_on_success)
    self._gym_env = make_gym_env(self._name, **dict(gym_kwargs or {}))
    obs_space = self._gym_env.observation_space
    self._goal_conditioned = isinstance(obs_space, gym.spaces.Dict)
    if self._goal_conditioned:
      obs_dim = sum(int(np.prod(obs_space[k].shape)) for k in FLATTEN_ORDER)
    else:
      obs_dim = int(np.prod(obs_space.shape))
    act_space = self._gym_env.action_space
    self._act_low = np.asarray(act_space.low, np.float64)
    self._act_high = np.asarray(act_space.high, np.float64)
    self._act_identity = bool(np.all(self._act_low == -1.0) and
                              np.all(self._act_high == 1.0))
    self._observation_spec = array_spec.ArraySpec(
        (obs_dim,), np.float32, name='observation')
    self._action_spec = array_spec.BoundedArraySpec(
        act_space.shape, np.float32, minimum=-1.0, maximum=1.0, name='action')
    self._seed = seed
    self._needs_seeding = True
    self._episode_return = 0.0
    self._episode_steps = 0
    self._episode_success = False
    self._last_episode: Optional[Dict[str, Any]] = None
    self._num_episodes = 0
    self._last_info: Dict[str, Any] = {}

  # ---------------------------------------------------------------- specs
  def observation_spec(self) -> array_spec.ArraySpec:
    return self._observation_spec

  def action_spec(self) -> array_spec.BoundedArraySpec:
    return self._action_spec

  # ----------------------------------------------------------- properties
  @property
  def name(self) -> str:
    """Canonical name, e.g. 'Hopper-v5'."""
    return self._name

  game = name  # The Atari environments' name for it.

  @property
  def family(self) -> str:
    """'mujoco', 'maze' or 'fetch'."""
    return self._family

  @property
  def gym_env(self) -> gym.Env:
    """The wrapped gymnasium environment (for scripted policies and generators)."""
    return self._gym_env

  @property
  def max_episode_steps(self) -> Optional[int]:
    spec = self._gym_env.spec
    return None if spec is None else spec.max_episode_steps

  @property
  def last_info(self) -> Dict[str, Any]:
    """gymnasium's `info` of the last reset or step."""
    return self._last_info

  @property
  def episode_return(self) -> float:
    return self._episode_return

  @property
  def episode_steps(self) -> int:
    return self._episode_steps

  @property
  def last_episode(self) -> Optional[Dict[str, Any]]:
    """Last completed episode: {'return', 'steps', 'truncated', 'success'}."""
    return None if self._last_episode is None else dict(self._last_episode)

  @property
  def num_episodes(self) -> int:
    return self._num_episodes

  def seed(self, seed: Optional[int]) -> None:
    """Re-seeds; takes effect at the next `reset()`."""
    self._seed = seed
    self._needs_seeding = True

  # --------------------------------------------------------- conversions
  def flatten_observation(self, observation) -> np.ndarray:
    """gymnasium observation -> float32 `[obs_dim]` (dicts in `FLATTEN_ORDER`)."""
    if self._goal_conditioned:
      return np.concatenate([np.asarray(observation[k], np.float32).ravel()
                             for k in FLATTEN_ORDER])
    return np.asarray(observation, np.float32).ravel()

  def to_env_action(self, action) -> np.ndarray:
    """A [-1, 1] action -> the gymnasium action (clipped, rescaled)."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != self._action_spec.shape:
      raise ValueError(f'{self._name}: action must have shape '
                       f'{self._action_spec.shape}, got {a.shape}')
    if not np.all(np.isfinite(a)):
      raise ValueError(f'{self._name}: action has NaN or infinite values: {a}')
    a = np.clip(a, -1.0, 1.0)
    if not self._act_identity:
      a = rescale_action(a, self._act_low, self._act_high)
    return a.astype(self._gym_env.action_space.dtype)

  # -------------------------------------------------------------- episodes
  def _reset(self) -> ts.TimeStep:
    if self._needs_seeding:
      observation, info = self._gym_env.reset(seed=self._seed)
      self._needs_seeding = False
    else:
      observation, info = self._gym_env.reset()
    self._last_info = info
    self._episode_return = 0.0
    self._episode_steps = 0
    self._episode_success = False
    return ts.restart(self.flatten_observation(observation))

  def _step(self, action) -> ts.TimeStep:
    observation, reward, terminated, truncated, info = self._gym_env.step(
        self.to_env_action(action))
    self._last_info = info
    success = False
    if self._family == 'fetch':
      success = bool(info.get('is_success', 0.0))
      reward = 1.0 if success else 0.0
      terminated = terminated or (self._terminate_on_success and success)
    elif self._family == 'maze':
      success = bool(info.get('success', False))
    self._episode_success = self._episode_success or success
    reward = np.float32(reward)
    self._episode_return += float(reward)
    self._episode_steps += 1
    obs = self.flatten_observation(observation)
    if terminated or truncated:
      self._num_episodes += 1
      self._last_episode = {
          'return': self._episode_return,
          'steps': self._episode_steps,
          'truncated': bool(truncated and not terminated),
          'success': self._episode_success,
      }
      if terminated:
        return ts.termination(obs, reward)
      return ts.truncation(obs, reward, discount=np.float32(1.0))
    return ts.transition(obs, reward, discount=np.float32(1.0))

  def close(self) -> None:
    self._gym_env.close()


def make_continuous_env(name: str, seed: Optional[int] = None,
                        terminate_on_success: Optional[bool] = None,
                        **gym_kwargs) -> ContinuousEnvironment:
  """`ContinuousEnvironment(name, seed, terminate_on_success, gym_kwargs)`."""
  return ContinuousEnvironment(name, seed=seed,
                               terminate_on_success=terminate_on_success,
                               gym_kwargs=gym_kwargs)


def valid_env_names() -> List[str]:
  return list(ENV_NAMES)
