"""MinAtar (Young & Tian, 2019) as a TF-Agents `PyEnvironment` with Atari-shaped observations.

MinAtar re-implements five Atari games on a 10x10 grid with `C` binary
channels per cell (Breakout: paddle, ball, trail, brick). It runs in pure
numpy, thousands of steps a second, and small agents learn it on a CPU, which
is why `bench/learning.py` uses it to show learning on 2 cores.

To reuse everything built for the ALE unchanged (Dopamine files, Reverb
tables, networks, the evaluation protocol), each state is drawn as one grey
frame of the ALE's preprocessed size, 84x84:

  * cell (i, j) holds grey level `(c + 1) * 255 // C` of the highest-index
    channel `c` set there, 0 if none (the colouring of MinAtar's own display,
    as grey levels). Breakout: paddle 63, ball 127, trail 191, brick 255;
  * each cell is a 7x7 block and the 70x70 grid sits in a 7-pixel black border,
    so a 14x14 ViT patch (S/14, micro) covers exactly 2x2 cells;
  * frames are stacked as in `tf_offline_q.envs.atari`: uint8 `[84, 84, 4]`,
    oldest first; at reset the stack is zeros except the newest frame.

Protocol (same meaning as for the ALE, `make_atari_env`):

  * sticky actions: with probability `sticky_action_prob` (paper: 0.25) the
    previous action is repeated instead of the chosen one (MinAtar's own
    mechanism, seeded with the environment);
  * one agent step is one MinAtar frame (no frame skip), so
    `max_episode_frames` caps agent steps; reaching it is a truncation
    (discount 1), a game over is terminal (discount 0);
  * rewards are raw; actions index the game's minimal action set (Breakout:
    0 NOOP, 1 LEFT, 2 RIGHT) or, with `full_action_space`, MinAtar's six
    actions (NOOP, LEFT, UP, RIGHT, DOWN, FIRE).

Games are named `MinAtar-{Game}`: MinAtar-Asterix, MinAtar-Breakout,
MinAtar-Freeway, MinAtar-Seaquest, MinAtar-SpaceInvaders.

  env = make_minatar_env('MinAtar-Breakout', seed=0)
  time_step = env.reset()              # observation uint8 [84, 84, 4]
  time_step = env.step(np.int64(2))    # RIGHT
"""
from typing import Optional

import numpy as np
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q import specs
from tf_offline_q.envs import base

PREFIX = 'MinAtar-'

# Our names -> MinAtar's module names.
_GAMES = {
    'Asterix': 'asterix',
    'Breakout': 'breakout',
    'Freeway': 'freeway',
    'Seaquest': 'seaquest',
    'SpaceInvaders': 'space_invaders',
}
GAMES = tuple(PREFIX + name for name in _GAMES)

NUM_ACTIONS_FULL = 6   # MinAtar's full action set (NOOP, LEFT, UP, RIGHT, DOWN, FIRE)
GRID = 10          # MinAtar's grid side
CELL = 7           # pixels per cell side in the 84x84 frame
BORDER = 7         # black pixels around the grid
FRAME_SIDE = GRID * CELL + 2 * BORDER   # 84


def _squash(name: str) -> str:
  return ''.join(c for c in name.lower() if c.isalnum())


def is_minatar_game(name) -> bool:
  """Whether `name` names a MinAtar game ('MinAtar-Breakout', 'minatar:breakout', ...)."""
  return isinstance(name, str) and _squash(name).startswith('minatar')


def canonical_game_name(name: str) -> str:
  """'minatar:breakout', 'MinAtar/Breakout', 'minatar-space_invaders' -> 'MinAtar-Breakout', ...

  Raises:
    ValueError: naming `name` and listing the MinAtar games.
  """
  if is_minatar_game(name):
    rest = _squash(name)[len('minatar'):]
    for game in _GAMES:
      if _squash(game) == rest:
        return PREFIX + game
  raise ValueError(f'Unknown MinAtar game {name!r}; the MinAtar games are '
                   f'{", ".join(GAMES)}.')


def grey_levels(num_channels: int) -> np.ndarray:
  """uint8 `[num_channels]`: the grey level drawn for each channel."""
  return ((np.arange(num_channels) + 1) * 255 // num_channels).astype(np.uint8)


def draw_frame(state: np.ndarray) -> np.ndarray:
  """MinAtar state bool `[10, 10, C]` -> uint8 `[84, 84]` grey frame (module docstring)."""
  state = np.asarray(state)
  if state.shape[:2] != (GRID, GRID) or state.ndim != 3:
    raise ValueError(f'MinAtar state must be [10, 10, C], got shape {state.shape}')
  cells = np.max(state * grey_levels(state.shape[2]), axis=2).astype(np.uint8)
  frame = np.zeros((FRAME_SIDE, FRAME_SIDE), np.uint8)
  frame[BORDER:BORDER + GRID * CELL, BORDER:BORDER + GRID * CELL] = (
      cells.repeat(CELL, axis=0).repeat(CELL, axis=1))
  return frame


def read_cells(frame: np.ndarray) -> np.ndarray:
  """Inverse of the drawing: uint8 `[..., 84, 84]` -> the grey level of each cell `[..., 10, 10]`."""
  centre = BORDER + CELL // 2
  return np.asarray(frame)[..., centre:centre + GRID * CELL:CELL,
                           centre:centre + GRID * CELL:CELL]


class MinAtarEnvironment(base.GameEnvironment):
  """One MinAtar game as an unbatched `PyEnvironment` (see the module docstring).

  Specs: observation uint8 `[84, 84, stack_size]`; action int64 `[]` in
  `[0, num_actions)`; reward float32 `[]` (raw); discount float32 `[]`.
  """

  def __init__(self, game: str, sticky_action_prob: float = 0.25,
               full_action_space: bool = False,
               max_episode_frames: Optional[int] = 108_000,
               stack_size: int = specs.STACK_SIZE,
               seed: Optional[int] = None):
    super().__init__(canonical_game_name(game), sticky_action_prob,
                     max_episode_frames, stack_size, seed)
    import minatar  # pylint: disable=g-import-not-at-top
    self._env = minatar.Environment(_GAMES[self._game[len(PREFIX):]],
                                    sticky_action_prob=self._sticky_action_prob)
    # Our action index -> MinAtar's (0..5).
    self._action_set = (list(range(NUM_ACTIONS_FULL)) if full_action_space
                        else list(self._env.minimal_action_set()))
    self._num_actions = len(self._action_set)
    self._observation_spec = tensor_spec.to_array_spec(
        specs.observation_spec((FRAME_SIDE, FRAME_SIDE), stack_size))
    self._action_spec = tensor_spec.to_array_spec(specs.action_spec(self._num_actions))
    self._stack = np.zeros((FRAME_SIDE, FRAME_SIDE, stack_size), np.uint8)

  @property
  def action_set(self):
    """MinAtar action ids of our action indices."""
    return list(self._action_set)

  @property
  def minatar_env(self):
    """The underlying `minatar.Environment` (read-only use, please)."""
    return self._env

  def _push(self) -> np.ndarray:
    self._stack[..., :-1] = self._stack[..., 1:]
    self._stack[..., -1] = draw_frame(self._env.state())
    return self._stack.copy()

  def _time_step(self, step_type, reward, discount) -> ts.TimeStep:
    return ts.TimeStep(step_type=np.asarray(step_type, np.int32),
                       reward=np.asarray(reward, np.float32),
                       discount=np.asarray(discount, np.float32),
                       observation=self._push())

  def _reset(self) -> ts.TimeStep:
    if self._needs_seeding:
      if self._seed is not None:
        self._env.seed(int(self._seed))
      self._needs_seeding = False
    self._env.reset()
    self._env.last_action = 0
    self._stack.fill(0)
    self._begin_episode()
    return self._time_step(ts.StepType.FIRST, 0.0, 1.0)

  def _step(self, action) -> ts.TimeStep:
    if self._episode_ended:
      return self.reset()
    reward, terminal = self._env.act(self._action_set[self._action_index(action)])
    reward = float(reward)
    self._episode_return += reward
    self._episode_frames += 1                    # one MinAtar frame per agent step
    self._episode_steps += 1
    if terminal:
      self._end_episode(truncated=False)
      return self._time_step(ts.StepType.LAST, reward, 0.0)
    if self._max_episode_frames is not None and self._episode_steps >= self._max_episode_frames:
      self._end_episode(truncated=True)
      return self._time_step(ts.StepType.LAST, reward, 1.0)
    return self._time_step(ts.StepType.MID, reward, 1.0)

  def close(self) -> None:
    pass

  def render(self, mode: str = 'rgb_array') -> np.ndarray:
    if mode != 'rgb_array':
      raise NotImplementedError(f'Only rgb_array rendering, got mode={mode!r}')
    return np.repeat(draw_frame(self._env.state())[..., None], 3, axis=2)


def make_minatar_env(game: str, sticky_action_prob: float = 0.25,
                     full_action_space: bool = False,
                     max_episode_frames: Optional[int] = 108_000,
                     stack_size: int = specs.STACK_SIZE,
                     seed: Optional[int] = None) -> MinAtarEnvironment:
  """A MinAtar game with the paper's evaluation protocol (see the module docstring).

  Args:
    game: 'MinAtar-Breakout' (any spelling `canonical_game_name` accepts).
    sticky_action_prob: probability of repeating the previous action.
    full_action_space: MinAtar's 6 actions instead of the minimal set.
    max_episode_frames: step cap per episode (truncation); None for none.
    stack_size: frames per observation.
    seed: seeds sticky actions and the game at the first reset (None: entropy).
  """
  return MinAtarEnvironment(game, sticky_action_prob, full_action_space,
                            max_episode_frames, stack_size, seed)
