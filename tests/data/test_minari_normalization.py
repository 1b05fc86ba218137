"""D4RL-normalised scores from a Minari dataset's reference scores."""
import json

import numpy as np
import pytest

from tf_offline_q.data import minari_data as md
from tf_offline_q.eval import normalization


def test_random_is_zero_and_expert_is_hundred():
  assert normalization.d4rl_normalized_score(10.0, 10.0, 50.0) == 0.0
  assert normalization.d4rl_normalized_score(50.0, 10.0, 50.0) == 100.0
  assert normalization.d4rl_normalized_score(20.0, 10.0, 50.0) == pytest.approx(25.0)
  np.testing.assert_allclose(
      normalization.d4rl_normalized_score([0.0, 90.0], 10.0, 50.0), [-25.0, 200.0])
  with pytest.raises(ValueError, match='equal'):
    normalization.d4rl_normalized_score(1.0, 3.0, 3.0)


def test_scores_from_written_dataset(tmp_path):
  rng = np.random.default_rng(0)
  episode = md.ContinuousEpisode(
      rng.normal(size=(4, 6)).astype(np.float32),
      rng.uniform(-1, 1, (3, 2)).astype(np.float32), np.ones(3, np.float32),
      np.zeros(3, bool), np.array([False, False, True]))
  md.write_minari_dataset(str(tmp_path), 'maze/x-v0', [episode],
                          'PointMaze_UMaze-v3', ref_min_score=2.0,
                          ref_max_score=202.0)
  _, meta = md.load_minari_dataset(str(tmp_path), 'maze/x-v0')
  assert normalization.d4rl_normalized_score_from_metadata(102.0, meta) == 50.0
  entry = normalization.d4rl_reference_scores_entry(meta)
  assert entry == {'PointMaze_UMaze-v3': {'random': 2.0, 'dqn_replay': 202.0,
                                          'scale': 'd4rl'}}
  # The entry is a valid reference-scores file for launch/report.py, whose
  # fraction-scale score is the D4RL score / 100.
  path = tmp_path / 'refs.json'
  path.write_text(json.dumps(entry))
  extra = normalization.load_reference_scores(str(path))
  assert normalization.dqn_normalized_score(
      'PointMaze_UMaze-v3', 102.0, extra) == pytest.approx(0.5)


def test_missing_reference_scores_named():
  with pytest.raises(ValueError, match="'maze/y-v0'.*ref_max_score"):
    normalization.d4rl_normalized_score_from_metadata(
        1.0, {'dataset_id': 'maze/y-v0', 'ref_min_score': 0.0,
              'ref_max_score': None})
