"""Tests of the DQN-Replay normalisation (paper Table 3, reference files)."""
import json
import os

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


# ------------------------------------------- reference scores of other games
MINATAR = {
    'MinAtar-Breakout': normalization.ReferenceScores(random=0.5, dqn_replay=8.5),
    'MinAtar-Freeway': normalization.ReferenceScores(random=0.0, dqn_replay=20.0),
}


def _write_json(path, text):
  with open(path, 'w') as f:
    f.write(text)
  return str(path)


def test_reference_scores_file_round_trip(tmp_path):
  path = str(tmp_path / 'sub' / 'reference_scores.json')
  assert normalization.write_reference_scores(path, MINATAR) == path
  loaded = normalization.load_reference_scores(path)
  assert loaded == MINATAR
  assert all(isinstance(v, normalization.ReferenceScores)
             for v in loaded.values())
  with open(path) as f:
    assert json.load(f) == {
        'MinAtar-Breakout': {'random': 0.5, 'dqn_replay': 8.5},
        'MinAtar-Freeway': {'random': 0.0, 'dqn_replay': 20.0}}
  # Atomic write: no temporary file is left behind; rewriting replaces.
  assert os.listdir(os.path.dirname(path)) == ['reference_scores.json']
  normalization.write_reference_scores(
      path, {'MinAtar-Asterix': {'random': 1, 'dqn_replay': 3}})
  assert normalization.load_reference_scores(path) == {
      'MinAtar-Asterix': (1.0, 3.0)}
  # Integers and extra fields (ignored) are accepted in the file.
  other = _write_json(
      tmp_path / 'ints.json',
      '{"MinAtar-Seaquest": {"random": 0, "dqn_replay": 12, "episodes": 50}}')
  assert normalization.load_reference_scores(other) == {
      'MinAtar-Seaquest': (0.0, 12.0)}


@pytest.mark.parametrize('text, expected', [
    ('{"MinAtar-Breakout": {"random": 0.5', 'not a valid'),
    ('[1, 2]', 'must be an object'),
    ('{"MinAtar-Breakout": [0.5, 8.5]}', "'MinAtar-Breakout': must be an obj"),
    ('{"MinAtar-Breakout": {"random": 0.5}}', "missing field 'dqn_replay'"),
    ('{"MinAtar-Breakout": {"dqn_replay": 8.5}}', "missing field 'random'"),
    ('{"MinAtar-Breakout": {"random": "0.5", "dqn_replay": 8.5}}',
     'field "random" must be a finite number'),
    ('{"MinAtar-Breakout": {"random": 0.5, "dqn_replay": NaN}}',
     'field "dqn_replay" must be a finite number'),
    ('{"MinAtar-Breakout": {"random": -Infinity, "dqn_replay": 8.5}}',
     'field "random" must be a finite number'),
    ('{"MinAtar-Breakout": {"random": true, "dqn_replay": 8.5}}',
     'field "random" must be a finite number'),
    ('{"MinAtar-Breakout": {"random": 0.5, "dqn_replay": null}}',
     'field "dqn_replay" must be a finite number'),
    ('{"MinAtar-Breakout": {"random": 2.0, "dqn_replay": 2}}', 'are equal'),
    ('{"MinAtar-Breakout": {"random": 0, "dqn_replay": 1}, '
     '"minatar-breakout": {"random": 0, "dqn_replay": 2}}', 'same game'),
    ('{"MinAtar-Breakout": {"random": 0, "dqn_replay": 1}, '
     '"MinAtar-Breakout": {"random": 0, "dqn_replay": 2}}', 'duplicate key'),
    ('{"pong": {"random": 0, "dqn_replay": 1}}', 'is in Table 3'),
])
def test_bad_reference_scores_file_names_file_and_field(tmp_path, text,
                                                        expected):
  path = _write_json(tmp_path / 'bad_scores.json', text)
  with pytest.raises(ValueError) as error:
    normalization.load_reference_scores(path)
  message = str(error.value)
  assert path in message
  assert expected in message
  if 'MinAtar-Breakout' in text and expected != 'not a valid':
    assert "'MinAtar-Breakout'" in message  # the game is named too


def test_missing_reference_scores_file_is_named(tmp_path):
  path = str(tmp_path / 'no_such_scores.json')
  with pytest.raises(FileNotFoundError, match='no_such_scores.json'):
    normalization.load_reference_scores(path)


def test_write_reference_scores_validates(tmp_path):
  path = str(tmp_path / 'scores.json')
  with pytest.raises(ValueError, match='are equal') as error:
    normalization.write_reference_scores(
        path, {'MinAtar-Breakout': normalization.ReferenceScores(1.0, 1.0)})
  assert path in str(error.value)
  with pytest.raises(ValueError, match='is in Table 3'):
    normalization.write_reference_scores(path, {'Breakout': (1.3, 104.9)})
  assert not os.path.exists(path)


def test_extra_reference_scores_lookup_is_case_insensitive():
  assert normalization.normalization_game_name(
      'minatar-breakout', MINATAR) == 'MinAtar-Breakout'
  assert normalization.normalization_game_name(
      ' MINATAR-FREEWAY ', MINATAR) == 'MinAtar-Freeway'
  assert normalization.reference_scores('MinAtar-breakout', MINATAR) == (
      MINATAR['MinAtar-Breakout'])
  # (4.5 - 0.5) / (8.5 - 0.5)
  assert normalization.dqn_normalized_score(
      'minatar-BREAKOUT', 4.5, extra=MINATAR) == pytest.approx(0.5)
  np.testing.assert_allclose(
      normalization.dqn_normalized_score('MinAtar-Freeway', [0.0, 20.0, 30.0],
                                         MINATAR), [0.0, 1.0, 1.5])
  assert normalization.dqn_normalized_scores(
      {'MinAtar-Freeway': 10.0, 'Pong': 14.5}, extra=MINATAR) == {
          'MinAtar-Freeway': pytest.approx(0.5), 'Pong': pytest.approx(1.0)}
  # Table 3 still works with extra, and plain dict entries are accepted.
  assert normalization.normalization_game_name('pong', MINATAR) == 'Pong'
  assert normalization.dqn_normalized_score(
      'MinAtar-Asterix', 3.0,
      {'MinAtar-Asterix': {'random': 1.0, 'dqn_replay': 5.0}}) == 0.5
  # Without extra, MinAtar games are unknown.
  with pytest.raises(ValueError, match='MinAtar-Breakout'):
    normalization.dqn_normalized_score('MinAtar-Breakout', 1.0)


@pytest.mark.parametrize('name', ['Pong', 'pong', 'BREAKOUT'])
def test_extra_colliding_with_table_3_is_an_error(name):
  extra = dict(MINATAR, **{name: normalization.ReferenceScores(0.0, 1.0)})
  for call in (
      lambda: normalization.normalization_game_name('MinAtar-Breakout', extra),
      lambda: normalization.reference_scores('Pong', extra),
      lambda: normalization.dqn_normalized_score('Pong', 1.0, extra),
      lambda: normalization.dqn_normalized_scores({'Pong': 1.0}, extra)):
    with pytest.raises(ValueError, match='is in Table 3') as error:
      call()
    assert name in str(error.value)
  # Table 3 is untouched.
  assert normalization.reference_scores('Pong') == (-20.3, 14.5)


def test_unknown_game_error_lists_extra_games():
  with pytest.raises(ValueError) as error:
    normalization.dqn_normalized_score('MinAtar-Seaquest', 1.0, MINATAR)
  message = str(error.value)
  assert 'MinAtar-Seaquest' in message
  for game in list(PAPER_TABLE_3) + list(MINATAR):
    assert game in message


def test_reference_labels_say_what_one_is(tmp_path):
  path = str(tmp_path / 'refs.json')
  normalization.write_reference_scores(path, MINATAR, {'MinAtar-Freeway': 'expert'})
  assert normalization.load_reference_scores(path) == MINATAR
  assert normalization.reference_labels(path) == {'MinAtar-Breakout': 'dataset average',
                                                  'MinAtar-Freeway': 'expert'}
  with pytest.raises(ValueError, match='one_means names games without reference scores'):
    normalization.write_reference_scores(path, MINATAR, {'Hopper': 'expert'})
  bad = _write_json(tmp_path / 'bad.json',
                    '{"MinAtar-Breakout": {"random": 0, "dqn_replay": 1, "one_means": 3}}')
  with pytest.raises(ValueError, match=r'bad.json: game .MinAtar-Breakout.: "one_means"'):
    normalization.reference_labels(bad)
