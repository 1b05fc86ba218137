"""Scripted policies for MinAtar games that an online DQN does not learn on a CPU budget.

Why: `bench/scaled_ql.py` needs logged data with signal (above random play)
for all five MinAtar games. The online DQN of `data/online_dqn.py` learns
Breakout, Seaquest and SpaceInvaders within 30K steps, but after 50K steps it
still plays Asterix at random level (0.5 per episode, random 0.48) and has
never crossed in Freeway (random play crosses about once in 100 episodes, so
epsilon-greedy exploration almost never sees a reward). For these two games
`launch/generate_logged_replay.py --behaviour=heuristic` plays epsilon-greedy
over the policy here instead of over the DQN's Q-values.

Each policy reads only what an agent sees: the newest frame's 10x10 cell grid
(`minatar.read_cells`, grey level per cell; a cell shows its highest-index
channel, `minatar.draw_frame`), uint8 `[10, 10]`.

  Freeway   always UP (the chicken crosses unless a car pushes it back).
  Asterix   one-step look-ahead over NOOP / LEFT / UP / RIGHT / DOWN: a cell
            is unsafe if an enemy is there or next to it in its row and moving
            towards it (its trail is behind it; an entity without a trail has
            just spawned at an edge and moves inwards); among safe moves the
            one onto gold, else the one closest to the nearest gold (Manhattan
            distance), ties broken at random. If the player is hidden (it
            stands on an entity's trail) the move is uniform.

  policy = make_heuristic('MinAtar-Asterix', env.action_set)
  action = policy(minatar.read_cells(time_step.observation[..., -1]), rng)
"""
from typing import Callable, Sequence

import numpy as np

from tf_offline_q.envs import minatar

# MinAtar's action ids (its `action_map` ['n', 'l', 'u', 'r', 'd', 'f']).
NOOP, LEFT, UP, RIGHT, DOWN = 0, 1, 2, 3, 4
_MOVES = ((NOOP, 0, 0), (LEFT, 0, -1), (UP, -1, 0), (RIGHT, 0, 1), (DOWN, 1, 0))

# Asterix's channels (MinAtar's order) as grey levels.
_ASTERIX_PLAYER, _ASTERIX_ENEMY, _ASTERIX_TRAIL, _ASTERIX_GOLD = minatar.grey_levels(4)
_ASTERIX_ROWS = (1, 8)   # the player's y range


def freeway(cells: np.ndarray, rng: np.random.Generator) -> int:
  """Always UP. `cells` uint8 `[10, 10]` (unused)."""
  del cells, rng
  return UP


def _asterix_heading(cells: np.ndarray, y: int, x: int) -> int:
  """+1 if the entity at (y, x) moves right, -1 if left (from its trail, else its edge)."""
  if x > 0 and cells[y, x - 1] == _ASTERIX_TRAIL:
    return 1
  if x < 9 and cells[y, x + 1] == _ASTERIX_TRAIL:
    return -1
  return 1 if x <= 4 else -1


def asterix(cells: np.ndarray, rng: np.random.Generator) -> int:
  """One-step look-ahead (module docstring). `cells` uint8 `[10, 10]` -> MinAtar action id."""
  cells = np.asarray(cells)
  player = np.argwhere(cells == _ASTERIX_PLAYER)
  if len(player) == 0:
    return int(_MOVES[rng.integers(len(_MOVES))][0])
  py, px = (int(v) for v in player[0])
  # Each enemy once, with the cell it threatens next to it (its heading), if any.
  enemies = [(int(y), int(x), int(x) + _asterix_heading(cells, int(y), int(x)))
             for y, x in np.argwhere(cells == _ASTERIX_ENEMY)]
  gold = np.argwhere(cells == _ASTERIX_GOLD)
  scores = []
  for action, dy, dx in _MOVES:
    y = int(np.clip(py + dy, *_ASTERIX_ROWS))
    x = int(np.clip(px + dx, 0, 9))
    unsafe = any(ey == y and x in (ex, next_x) for ey, ex, next_x in enemies)
    on_gold = cells[y, x] == _ASTERIX_GOLD
    distance = (np.min(np.abs(gold[:, 0] - y) + np.abs(gold[:, 1] - x)) if len(gold) else 0)
    scores.append(-100.0 * unsafe + 10.0 * on_gold - distance)
  scores = np.asarray(scores)
  best = np.flatnonzero(scores == scores.max())
  return int(_MOVES[best[rng.integers(len(best))]][0])


HEURISTICS = {'MinAtar-Freeway': freeway, 'MinAtar-Asterix': asterix}


def make_heuristic(game: str, action_set: Sequence[int]
                   ) -> Callable[[np.ndarray, np.random.Generator], int]:
  """The scripted policy of `game` as `policy(cells [10, 10], rng) -> action index`.

  Args:
    game: a MinAtar game name (any spelling `minatar.canonical_game_name` takes).
    action_set: MinAtar action ids of the environment's action indices
      (`MinAtarEnvironment.action_set`: minimal or full set).

  Raises:
    ValueError: `game` has no heuristic (naming the games that have one), or
      its action set lacks an action the heuristic uses.
  """
  name = minatar.canonical_game_name(game) if minatar.is_minatar_game(game) else game
  if name not in HEURISTICS:
    raise ValueError(f'No heuristic policy for {game!r}; games with one: '
                     f'{", ".join(sorted(HEURISTICS))}')
  index = {int(a): i for i, a in enumerate(action_set)}
  needed = (UP,) if name == 'MinAtar-Freeway' else tuple(a for a, _, _ in _MOVES)
  missing = [a for a in needed if a not in index]
  if missing:
    raise ValueError(f'{name}: the action set {list(action_set)} lacks MinAtar action(s) '
                     f'{missing} that its heuristic uses')
  policy = HEURISTICS[name]
  return lambda cells, rng: index[policy(cells, rng)]
