"""Resumable chunks and the maze and Fetch dataset generators (tiny runs)."""
import os

import numpy as np
import pytest

from tf_offline_q.data import generation
from tf_offline_q.data import minari_data as md
from tests import launch_scripts

_LAUNCH = os.path.join(os.path.dirname(__file__), '..', '..', 'launch')


def _launch_module(name):
  return launch_scripts.load(name)


def _episodes(rng, lengths):
  return [md.ContinuousEpisode(
      rng.normal(size=(t + 1, 3)).astype(np.float32),
      rng.uniform(-1, 1, (t, 2)).astype(np.float32),
      rng.normal(size=t).astype(np.float32), np.zeros(t, bool),
      np.r_[np.zeros(t - 1, bool), True]) for t in lengths]


def test_chunks_save_resume_and_refuse_other_settings(tmp_path):
  work = str(tmp_path / 'work')
  chunks = generation.EpisodeChunks(work, 3, {'seed': 0})
  rng = np.random.default_rng(0)
  first = _episodes(rng, [3, 1])
  chunks.save(0, first, {'attempts': 4})
  chunks.save(2, _episodes(rng, [2]))
  again = generation.EpisodeChunks(work, 3, {'seed': 0})   # resumed
  assert again.missing() == [1]
  with pytest.raises(ValueError, match='missing'):
    again.load_all()
  loaded, info = again.load(0)
  for a, b in zip(first, loaded):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
  assert int(info['attempts']) == 4
  again.save(1, _episodes(rng, [5]))
  episodes, infos = again.load_all()
  assert [e.length for e in episodes] == [3, 1, 5, 2]
  assert len(infos['attempts']) == 1
  with pytest.raises(ValueError, match='other settings'):
    generation.EpisodeChunks(work, 3, {'seed': 1})
  assert not [f for f in os.listdir(work) if f.endswith('.tmp')]


def test_maze_generator(tmp_path):
  gen = _launch_module('generate_maze_data')
  root = str(tmp_path / 'minari')
  path, summary = gen.generate(root, 'pointmaze_umaze', num_steps=900,
                               ref_episodes=2, episodes_per_chunk=2,
                               progress_interval=1e9)
  assert path == os.path.join(root, 'pointmaze/umaze-v0')
  assert not os.path.exists(os.path.join(root, '.work'))
  episodes, meta = md.load_minari_dataset(root, 'pointmaze/umaze-v0')
  assert [e.length for e in episodes] == [300, 300, 300]
  assert all(e.truncations[-1] for e in episodes)
  # Goal to goal: sparse reward 1 at each goal reached, several per episode.
  assert summary['data_mean_return'] >= 1.0
  assert meta['ref_max_score'] == summary['ref_max_score']
  assert meta['ref_max_score'] > meta['ref_min_score']
  assert meta['minari']['config']['action_noise'] == 0.5
  with pytest.raises(FileExistsError):
    gen.generate(root, 'pointmaze_umaze', num_steps=300, ref_episodes=2)
  with pytest.raises(ValueError, match='PointMaze'):
    gen.generate(root, 'Hopper-v5', num_steps=300)


def test_fetch_generator(tmp_path):
  gen = _launch_module('generate_fetch_data')
  root = str(tmp_path / 'minari')
  _, summary = gen.generate(root, 'FetchPush-v4', num_demos=3,
                            num_autonomous=3, ref_episodes=4,
                            episodes_per_chunk=2, progress_interval=1e9)
  episodes, meta = md.load_minari_dataset(root, 'fetch/push-mixed-v0')
  assert len(episodes) == 6
  # Demonstrations (kept only if successful) come first: return 1, terminal.
  for e in episodes[:3]:
    assert e.episode_return == 1.0 and e.terminations[-1]
  for e in episodes:
    assert set(np.unique(e.rewards)) <= {0.0, 1.0}
  assert summary['demo_success_rate'] > 0.5
  assert meta['ref_max_score'] == 1.0   # the script succeeds
  assert meta['ref_min_score'] < 1.0
  assert meta['minari']['num_demo_episodes'] == 3
