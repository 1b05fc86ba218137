"""Atari 2600 as a TF-Agents `PyEnvironment`, with Dopamine's DQN preprocessing.

The environment is built with gymnasium (`ALE/{Game}-v5`, `frameskip=1`,
`obs_type='grayscale'`, sticky actions in the ALE) and then driven through its
`ALEInterface` directly: one agent step is `frame_skip` calls to `ale.act`, and
the screen is read only for the last two raw frames. This is the same
processing as Dopamine's `AtariPreprocessing`, without paying for gymnasium's
per-frame observation copies and wrappers.

Per agent step (`frame_skip=4`):

  * the chosen action is sent to the ALE `frame_skip` times; the ALE itself
    repeats the previous action with probability `sticky_action_prob` at every
    raw frame (Machado et al., 2018);
  * rewards of the raw frames are summed (raw, unclipped; agents clip);
  * the grey screens `[210, 160]` of the last two raw frames are max-pooled,
    then resized to `[84, 84]` with `cv2.INTER_AREA`;
  * the new frame is appended to a 4-frame stack, oldest first / newest last
    (`observation[..., -1]` is the newest frame). At reset the stack is zeros
    except the last frame, as in Dopamine's replay buffer.

Episodes end with `StepType.LAST` either

  * at game over (terminal): `discount = 0.0`; or
  * when the episode has used `max_episode_frames` raw frames (108,000 frames
    = 27,000 agent steps = 30 minutes of play by default): a truncation, with
    `discount = 1.0`.

The next call to `step()` after a `LAST` step resets the game (the action is
ignored), as TF-Agents drivers expect.

Example:

  env = make_atari_env('Pong', seed=0)
  time_step = env.reset()              # observation uint8 [84, 84, 4]
  time_step = env.step(np.int64(3))    # reward float32 [], discount float32 []
"""
import functools
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import ale_py
import cv2
import gymnasium as gym
import numpy as np
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q import specs
from tf_offline_q.envs import base

# The paper's five games (Agrawal et al., 2020), as ALE / gymnasium names.
GAMES = ('Asterix', 'Breakout', 'Pong', 'Qbert', 'Seaquest')

# The ALE's native screen, `[height, width]`.
_SCREEN_SHAPE = (210, 160)

# OpenCV would otherwise start a thread pool per process; the ALE is the
# bottleneck and the machine's cores are better left to the learner.
cv2.setNumThreads(1)

_ALE_GAMES_CACHE: Optional[Dict[str, str]] = None


def _squash(name: str) -> str:
  return ''.join(c for c in name.lower() if c.isalnum())


def _ale_games() -> Dict[str, str]:
  """Maps squashed names ('spaceinvaders') to gymnasium names ('SpaceInvaders').

  Only ROMs with a registered single-player `ALE/{Name}-v5` environment count.
  """
  global _ALE_GAMES_CACHE
  if _ALE_GAMES_CACHE is None:
    gym.register_envs(ale_py)
    games = {}
    for env_id in gym.registry:
      if env_id.startswith('ALE/') and env_id.endswith('-v5'):
        name = env_id[len('ALE/'):-len('-v5')]
        games[_squash(name)] = name
    _ALE_GAMES_CACHE = games
  return _ALE_GAMES_CACHE


def valid_games() -> List[str]:
  """Sorted gymnasium names of every ALE game `make_atari_env` accepts."""
  return sorted(_ale_games().values())


def canonical_game_name(name: str) -> str:
  """Returns the gymnasium/ALE name of a game: 'pong' -> 'Pong'.

  Case, '_', '-' and spaces are ignored ('space_invaders', 'Space Invaders'
  and 'SpaceInvaders' are the same game); an `ALE/Pong-v5` id is accepted too.

  Args:
    name: a game name.

  Returns:
    The PascalCase name used in `ALE/{name}-v5`, e.g. 'Qbert', 'SpaceInvaders'.

  Raises:
    ValueError: naming `name` and listing the valid games, if it is not an ALE
      game.
  """
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f'game must be a non-empty string, got {name!r}')
  key = name.strip()
  if key.startswith('ALE/'):
    key = key[len('ALE/'):]
  if key.endswith('-v5'):
    key = key[:-len('-v5')]
  games = _ale_games()
  squashed = _squash(key)
  if squashed not in games:
    raise ValueError(
        f'Unknown Atari game {name!r}. The paper\'s games are '
        f'{", ".join(GAMES)}; any ALE game is accepted: '
        f'{", ".join(sorted(games.values()))}.')
  return games[squashed]


@functools.lru_cache(maxsize=None)
def minimal_action_set(game: str) -> Tuple[int, ...]:
  """The game's minimal action set as indices into the full (18-action) set.

  The ALE's own list (`ALEInterface.getMinimalActionSet` of the game's ROM,
  shipped with ale-py): entry `i` is the `ale_py.Action` that minimal-set
  action `i` presses, and since the full set is `Action(0) ... Action(17)` in
  order, its value is the same key's index in the full set. Pong:
  (0, 1, 3, 4, 11, 12) = NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE.
  DQN-Replay (Dopamine files, TFDS rlu_atari) stores actions as indices into
  this set (`data/action_sets.py` maps them to the full set).

  Raises:
    ValueError: unknown game (see `canonical_game_name`).
  """
  name = canonical_game_name(game)
  rom = gym.spec(f'ALE/{name}-v5').kwargs['game']
  ale = ale_py.ALEInterface()
  ale.setLoggerMode(ale_py.LoggerMode.Error)
  ale.loadROM(ale_py.roms.get_rom_path(rom))
  return tuple(int(a.value) for a in ale.getMinimalActionSet())


def _time_step(step_type, observation, reward, discount) -> ts.TimeStep:
  """A numpy `TimeStep`, as `ts.restart/transition/termination` would build.

  Built directly: the `ts` helpers' structure checks cost more than the frame.
  """
  return ts.TimeStep(
      step_type=np.asarray(step_type, dtype=np.int32),
      reward=np.asarray(reward, dtype=np.float32),
      discount=np.asarray(discount, dtype=np.float32),
      observation=observation)


class AtariEnvironment(base.GameEnvironment):
  """One ALE game with DQN preprocessing, as an unbatched `PyEnvironment`.

  Specs (see `tf_offline_q.specs`):
    observation: uint8 `[84, 84, stack_size]`, oldest frame first.
    action: int64 `[]` in `[0, num_actions)`, an index into the ALE action set
      (the 18 legal actions when `full_action_space`, else the game's minimal
      set).
    reward: float32 `[]`, raw. discount: float32 `[]`.

  Use `make_atari_env` to build one.
  """

  def __init__(self,
               game: str,
               sticky_action_prob: float = 0.25,
               full_action_space: bool = True,
               max_episode_frames: Optional[int] = 108_000,
               frame_skip: int = 4,
               stack_size: int = specs.STACK_SIZE,
               frame_shape: Sequence[int] = specs.FRAME_SHAPE,
               seed: Optional[int] = None):
    if frame_skip < 1:
      raise ValueError(f'frame_skip must be >= 1, got {frame_skip}')
    super().__init__(canonical_game_name(game), sticky_action_prob,
                     max_episode_frames, stack_size, seed)
    gym.register_envs(ale_py)
    self._frame_skip = int(frame_skip)

    # The frame cap is ours (counted in raw frames, checked after each agent
    # step); the ALE's own cap is disabled so it never stops mid-frame-skip.
    self._gym_env = gym.make(
        f'ALE/{self._game}-v5',
        obs_type='grayscale',
        frameskip=1,
        repeat_action_probability=self._sticky_action_prob,
        full_action_space=full_action_space,
        max_num_frames_per_episode=None,
        disable_env_checker=True)
    self._atari = self._gym_env.unwrapped
    self._ale = self._atari.ale
    # `ale_py.Action` values the ALE understands, indexed by our int actions.
    self._action_set = list(
        self._atari._action_set)  # pylint: disable=protected-access
    self._num_actions = len(self._action_set)

    self._observation_spec = tensor_spec.to_array_spec(
        specs.observation_spec(frame_shape, stack_size))
    self._action_spec = tensor_spec.to_array_spec(
        specs.action_spec(self._num_actions))
    self._resize_wh = (int(frame_shape[1]), int(frame_shape[0]))

    # Raw grey screens of the last two raw frames of an agent step.
    self._screens = np.zeros((2,) + _SCREEN_SHAPE, dtype=np.uint8)
    self._stack = np.zeros(tuple(frame_shape) + (stack_size,), dtype=np.uint8)
    # Stack shifting through a packed integer view is ~10x faster than a
    # strided byte copy; used when a pixel's stack fits a machine word.
    self._packed = None
    if sys.byteorder == 'little' and stack_size in (2, 4, 8):
      self._packed = self._stack.view(f'<u{stack_size}')[..., 0]

    self._episode_lives = 0

  @property
  def frame_skip(self) -> int:
    return self._frame_skip

  @property
  def ale(self):
    """The underlying `ale_py.ALEInterface` (read-only use, please)."""
    return self._ale

  @property
  def gym_env(self):
    """The gymnasium environment the ALE was configured through."""
    return self._gym_env

  def get_info(self) -> Dict[str, np.ndarray]:
    return {
        'lives': np.asarray(self._episode_lives, dtype=np.int32),
        'episode_frames': np.asarray(self._episode_frames, dtype=np.int64),
        'episode_return': np.asarray(self._episode_return, dtype=np.float32),
    }

  # ------------------------------------------------------------ stepping
  def _pool_and_push(self) -> np.ndarray:
    """Max-pools the two screens, resizes, pushes onto the stack; a copy."""
    pooled = np.maximum(self._screens[0], self._screens[1])
    frame = cv2.resize(pooled, self._resize_wh, interpolation=cv2.INTER_AREA)
    if self._packed is not None:
      # Each pixel's `stack_size` bytes as one little-endian word: dropping
      # the oldest frame is a right shift by 8 bits, the newest goes on top.
      packed = self._packed
      np.right_shift(packed, 8, out=packed)
      packed |= frame.astype(packed.dtype) << (8 * (self._stack.shape[-1] - 1))
    else:
      self._stack[..., :-1] = self._stack[..., 1:]
      self._stack[..., -1] = frame
    return self._stack.copy()

  def _reset(self) -> ts.TimeStep:
    if self._needs_seeding:
      # Seeds the ALE (sticky actions) and reloads the ROM; `None` = entropy.
      self._gym_env.reset(seed=self._seed)
      self._needs_seeding = False
    else:
      self._ale.reset_game()
    self._begin_episode()
    self._episode_lives = self._ale.lives()
    self._ale.getScreenGrayscale(self._screens[1])
    self._screens[0] = self._screens[1]
    self._stack.fill(0)
    return _time_step(ts.StepType.FIRST, self._pool_and_push(), 0.0, 1.0)

  def _step(self, action) -> ts.TimeStep:
    if self._episode_ended:
      # After LAST (or before the first reset) a step starts a new episode.
      return self.reset()
    index = self._action_index(action)
    ale_action = self._action_set[index]
    ale = self._ale
    reward = 0.0
    game_over = False
    fetched_first = False
    first_pooled = self._frame_skip - 2
    for t in range(self._frame_skip):
      reward += ale.act(ale_action)
      self._episode_frames += 1
      if ale.game_over(with_truncation=False):
        game_over = True
        break
      if t >= first_pooled:
        ale.getScreenGrayscale(self._screens[t - first_pooled])
        fetched_first |= t == first_pooled
    if game_over:
      # Pool the terminal frame with the one before it if we read it.
      ale.getScreenGrayscale(self._screens[1])
      if not fetched_first:
        self._screens[0] = self._screens[1]
    elif not fetched_first:  # frame_skip == 1: nothing to pool with.
      self._screens[0] = self._screens[1]

    self._episode_return += reward
    self._episode_steps += 1
    self._episode_lives = ale.lives()
    observation = self._pool_and_push()
    if game_over:
      self._end_episode(truncated=False)
      return _time_step(ts.StepType.LAST, observation, reward, 0.0)
    if (self._max_episode_frames is not None and
        self._episode_frames >= self._max_episode_frames):
      self._end_episode(truncated=True)
      return _time_step(ts.StepType.LAST, observation, reward, 1.0)
    return _time_step(ts.StepType.MID, observation, reward, 1.0)

  def close(self) -> None:
    self._gym_env.close()

  def render(self, mode: str = 'rgb_array') -> np.ndarray:
    if mode != 'rgb_array':
      raise NotImplementedError(f'Only rgb_array rendering, got mode={mode!r}')
    return self._ale.getScreenRGB()


def make_atari_env(game: str,
                   sticky_action_prob: float = 0.25,
                   full_action_space: bool = True,
                   max_episode_frames: Optional[int] = 108_000,
                   frame_skip: int = 4,
                   stack_size: int = specs.STACK_SIZE,
                   seed: Optional[int] = None) -> AtariEnvironment:
  """The paper's Atari environment (Table 2) as a TF-Agents PyEnvironment.

  Args:
    game: game name, any case ('pong', 'Pong'); see `canonical_game_name`.
    sticky_action_prob: ALE `repeat_action_probability`, per raw frame.
    full_action_space: use the 18 legal ALE actions (True; index i is
      `ale_py.Action(i)`, the action set every game shares) or the game's
      minimal action set (the set DQN-Replay was recorded with; see
      `minimal_action_set`).
    max_episode_frames: raw-frame cap per episode (truncation, discount 1);
      None for no cap.
    frame_skip: raw frames per agent step (the action is repeated).
    stack_size: frames in an observation.
    seed: seeds the ALE (sticky actions, game randomness) at the first reset;
      None draws from OS entropy.

  Returns:
    An `AtariEnvironment`: observation uint8 `[84, 84, stack_size]`, action
    int64 `[]`.

  Raises:
    ValueError: unknown game (named, with the list of valid games) or bad
      arguments.
  """
  return AtariEnvironment(
      game,
      sticky_action_prob=sticky_action_prob,
      full_action_space=full_action_space,
      max_episode_frames=max_episode_frames,
      frame_skip=frame_skip,
      stack_size=stack_size,
      seed=seed)


__all__ = [
    'GAMES', 'AtariEnvironment', 'canonical_game_name', 'make_atari_env',
    'minimal_action_set', 'valid_games'
]
