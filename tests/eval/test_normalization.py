"""Tests of the DQN-Replay normalisation (paper Table 3)."""
import numpy as np
import pytest

from tf_offline_q.eval import normalization

# Table 3 of the paper, typed in again independently: (random, DQN-Replay).
PAPER_TABLE_3 = {
    'Asterix': (279.1, 3185.2),
    'Breakout': (1.3, 104.9),
    'Pong': (-20.3, 14.5),
    'Qbert': (155.0, 8249.7),
    'Seaquest': (81.8, 1597.4),
}


def test_table_matches_paper():
  assert set(normalization.TABLE_3) == set(PAPER_TABLE_3)
  for game, (random, dqn) in PAPER_TABLE_3.items():
    row = normalization.reference_scores(game)
    assert (row.random, row.dqn_replay) == (random, dqn)


@pytest.mark.parametrize('game', sorted(PAPER_TABLE_3))
def test_random_is_zero_and_dqn_replay_is_one(game):
  random, dqn = PAPER_TABLE_3[game]
  assert normalization.dqn_normalized_score(game, random) == pytest.approx(0.0)
  assert normalization.dqn_normalized_score(game, dqn) == pytest.approx(1.0)
  halfway = (random + dqn) / 2
  assert normalization.dqn_normalized_score(game, halfway) == pytest.approx(0.5)


def test_hand_computed_values_and_arrays():
  # Pong: 21 points -> (21 + 20.3) / (14.5 + 20.3).
  assert normalization.dqn_normalized_score('Pong', 21.0) == pytest.approx(
      41.3 / 34.8)
  scores = normalization.dqn_normalized_score('breakout', [1.3, 104.9, 208.5])
  assert isinstance(scores, np.ndarray)
  np.testing.assert_allclose(scores, [0.0, 1.0, 2.0])
  assert isinstance(normalization.dqn_normalized_score('PONG', 0.0), float)
  assert normalization.dqn_normalized_scores({'Pong': 14.5})['Pong'] == (
      pytest.approx(1.0))


def test_unknown_game_is_a_clear_error():
  with pytest.raises(ValueError) as error:
    normalization.dqn_normalized_score('MsPacman', 100.0)
  assert 'MsPacman' in str(error.value)
  for game in PAPER_TABLE_3:
    assert game in str(error.value)
  assert normalization.normalization_game_name('seaquest') == 'Seaquest'
