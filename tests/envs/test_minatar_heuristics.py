"""envs/minatar_heuristics.py: scripted MinAtar policies with signal, from what the agent sees."""
import numpy as np
import pytest

from tf_offline_q.envs import minatar
from tf_offline_q.envs import minatar_heuristics as mh

PLAYER, ENEMY, TRAIL, GOLD = minatar.grey_levels(4)


def _mean_return(game, policy, episodes, max_frames, seed=0):
  env = minatar.make_minatar_env(game, max_episode_frames=max_frames, seed=seed)
  rng = np.random.default_rng(seed)
  returns = []
  for _ in range(episodes):
    time_step, total = env.reset(), 0.0
    while not time_step.is_last():
      cells = minatar.read_cells(time_step.observation[..., -1])
      time_step = env.step(np.int64(policy(env, cells, rng)))
      total += float(time_step.reward)
    returns.append(total)
  return float(np.mean(returns))


@pytest.mark.parametrize('game, episodes, max_frames, factor', [
    ('MinAtar-Freeway', 2, 400, None), ('MinAtar-Asterix', 15, 1000, 3.0)])
def test_scripts_beat_random_play(game, episodes, max_frames, factor):
  env = minatar.make_minatar_env(game)
  script = mh.make_heuristic(game, env.action_set)
  scripted = _mean_return(game, lambda e, c, r: script(c, r), episodes, max_frames)
  random = _mean_return(game, lambda e, c, r: int(r.integers(e.num_actions)), episodes,
                        max_frames)
  if factor is None:   # Freeway: random play almost never crosses
    assert scripted >= 5 and random <= 1, (scripted, random)
  else:
    assert scripted > factor * max(random, 0.3), (scripted, random)


def _asterix_cells(player, enemies=(), gold=()):
  """Cells with the player at (y, x); entities as (y, x, heading), heading +1 right / -1 left."""
  cells = np.zeros((10, 10), np.uint8)
  cells[player] = PLAYER
  for level, entities in ((ENEMY, enemies), (GOLD, gold)):
    for y, x, heading in entities:
      cells[y, x] = level
      if 0 <= x - heading <= 9:
        cells[y, x - heading] = TRAIL
  return cells


def test_asterix_steps_away_from_an_approaching_enemy_and_onto_gold():
  rng = np.random.default_rng(0)
  # Enemy right of the player moving left: NOOP and RIGHT are unsafe; gold above.
  cells = _asterix_cells((5, 5), enemies=[(5, 6, -1)], gold=[(4, 5, 1)])
  assert mh.asterix(cells, rng) == mh.UP
  # The same enemy moving right (away): staying is safe; gold below wins.
  cells = _asterix_cells((5, 5), enemies=[(5, 7, 1)], gold=[(6, 5, -1)])
  assert mh.asterix(cells, rng) == mh.DOWN
  # Enemy in the row above, next to the target cell and heading for it: UP is unsafe even
  # though gold lies that way; the closest safe move towards the gold is taken instead.
  cells = _asterix_cells((5, 5), enemies=[(4, 4, 1)], gold=[(2, 6, 1)])
  assert mh.asterix(cells, rng) == mh.RIGHT
  # Enemies above, below, and right heading left: only LEFT is safe, whatever the ties.
  cells = _asterix_cells((5, 5), enemies=[(4, 5, -1), (6, 5, 1), (5, 6, -1)])
  assert {mh.asterix(cells, rng) for _ in range(20)} == {mh.LEFT}
  hidden = np.zeros((10, 10), np.uint8)   # no player visible: a uniform move
  assert {mh.asterix(hidden, rng) for _ in range(100)} == {0, 1, 2, 3, 4}


def test_actions_map_to_the_environment_action_set():
  minimal = minatar.make_minatar_env('MinAtar-Freeway').action_set   # n, u, d
  policy = mh.make_heuristic('minatar:freeway', minimal)
  assert minimal[policy(np.zeros((10, 10), np.uint8), None)] == mh.UP
  full = mh.make_heuristic('MinAtar-Freeway', list(range(6)))
  assert full(np.zeros((10, 10), np.uint8), None) == mh.UP


def test_bad_games_and_action_sets_are_named():
  with pytest.raises(ValueError, match="No heuristic policy for 'MinAtar-Breakout'.*Asterix"):
    mh.make_heuristic('MinAtar-Breakout', range(6))
  with pytest.raises(ValueError, match=r'lacks MinAtar action\(s\) \[1, 3, 4\]'):
    mh.make_heuristic('MinAtar-Asterix', [0, 2])
