"""Minari datasets written and read back, D4RL HDF5 files, sources, and every bad-input error."""
import json
import os
import warnings

import gymnasium as gym
import h5py
import numpy as np
import pytest

from tf_offline_q.data import minari_data as md

MAZE = 'PointMaze_UMaze-v3'   # obs_dim 6, act_dim 2


def _episode(rng, length, obs_dim=6, act_dim=2, terminal=False,
             truncated=True):
  end = np.zeros(length, bool)
  term, trunc = end.copy(), end.copy()
  term[-1], trunc[-1] = terminal, truncated and not terminal
  return md.ContinuousEpisode(
      rng.normal(size=(length + 1, obs_dim)).astype(np.float32),
      rng.uniform(-1, 1, (length, act_dim)).astype(np.float32),
      rng.normal(size=length).astype(np.float32), term, trunc)


@pytest.fixture
def episodes():
  rng = np.random.default_rng(0)
  return [_episode(rng, 4), _episode(rng, 7, terminal=True),
          _episode(rng, 1, truncated=False)]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    for field in md.ContinuousEpisode._fields:
      np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
      assert getattr(x, field).dtype == getattr(y, field).dtype


def test_round_trip(tmp_path, episodes):
  root = str(tmp_path / 'minari')
  path = md.write_minari_dataset(root, 'maze/test-v0', episodes, 'pointmaze_umaze',
                                 ref_min_score=1.5, ref_max_score=9.0,
                                 extra_metadata={'note': 'x'})
  assert path == os.path.join(root, 'maze/test-v0')
  assert os.path.isfile(os.path.join(path, 'data', 'main_data.hdf5'))
  # Nothing but the namespace is left in the root (no staging directories).
  assert sorted(os.listdir(root)) == ['maze']
  loaded, meta = md.load_minari_dataset(root, 'maze/test-v0')
  _assert_same(episodes, loaded)
  assert meta['env_name'] == MAZE
  assert (meta['ref_min_score'], meta['ref_max_score']) == (1.5, 9.0)
  assert (meta['obs_dim'], meta['act_dim']) == (6, 2)
  assert (meta['num_episodes'], meta['num_steps']) == (3, 12)
  assert meta['minari']['note'] == 'x'
  json.dumps(meta)   # JSON-serialisable
  # Minari itself reads it, with the reference scores where it expects them.
  import minari  # pylint: disable=g-import-not-at-top
  dataset = minari.MinariDataset(os.path.join(path, 'data'))
  assert dataset.total_episodes == 3 and dataset.total_steps == 12
  assert dataset.storage.metadata['ref_max_score'] == 9.0
  # Same through a source string.
  loaded2, _ = md.load_source(f'minari:{root}:maze/test-v0')
  _assert_same(episodes, loaded2)


def test_refuses_to_overwrite_unless_asked(tmp_path, episodes):
  root = str(tmp_path)
  md.write_minari_dataset(root, 'maze/test-v0', episodes, MAZE, 0.0, 1.0)
  with pytest.raises(FileExistsError, match='overwrite'):
    md.write_minari_dataset(root, 'maze/test-v0', episodes[:1], MAZE, 0.0, 1.0)
  md.write_minari_dataset(root, 'maze/test-v0', episodes[:1], MAZE, 0.0, 2.0,
                          overwrite=True)
  loaded, meta = md.load_minari_dataset(root, 'maze/test-v0')
  assert len(loaded) == 1 and meta['ref_max_score'] == 2.0
  assert not [n for n in os.listdir(root) if n.startswith('.minari')]


def test_environment_variable_left_alone(tmp_path, episodes, monkeypatch):
  monkeypatch.setenv('MINARI_DATASETS_PATH', '/nonexistent/elsewhere')
  md.write_minari_dataset(str(tmp_path), 'maze/test-v0', episodes, MAZE, 0, 1)
  assert os.environ['MINARI_DATASETS_PATH'] == '/nonexistent/elsewhere'
  assert not os.path.exists('/nonexistent/elsewhere')


def test_reads_dict_observations_made_elsewhere(tmp_path):
  """A Minari dataset with goal-conditioned dict observations is flattened."""
  import minari  # pylint: disable=g-import-not-at-top
  from minari.data_collector import EpisodeBuffer  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  t = 5
  obs = {'achieved_goal': rng.normal(size=(t + 1, 2)),
         'desired_goal': rng.normal(size=(t + 1, 2)),
         'observation': rng.normal(size=(t + 1, 4))}
  space = gym.spaces.Dict({k: gym.spaces.Box(-np.inf, np.inf, v.shape[1:],
                                             np.float64)
                           for k, v in obs.items()})
  buffer = EpisodeBuffer(id=0, observations=obs,
                         actions=rng.uniform(-1, 1, (t, 2)).astype(np.float32),
                         rewards=np.zeros(t), terminations=np.zeros(t, bool),
                         truncations=np.r_[np.zeros(t - 1, bool), True])
  os.environ['MINARI_DATASETS_PATH'] = str(tmp_path)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      minari.create_dataset_from_buffers(
          'pointmaze/other-v1', [buffer], observation_space=space,
          action_space=gym.spaces.Box(-1, 1, (2,), np.float32))
  finally:
    del os.environ['MINARI_DATASETS_PATH']
  episodes, meta = md.load_minari_dataset(str(tmp_path), 'pointmaze/other-v1',
                                          env_name=MAZE)
  np.testing.assert_allclose(
      episodes[0].observations,
      np.concatenate([obs['observation'], obs['desired_goal']], 1), rtol=1e-6)
  assert meta['env_name'] == MAZE and meta['ref_max_score'] is None


# ------------------------------------------------------------------ D4RL
def _write_d4rl(path, n=10, obs_dim=11, act_dim=3, next_obs=False, **override):
  rng = np.random.default_rng(0)
  data = {
      'observations': np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim),
      'actions': rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
      'rewards': np.arange(n, dtype=np.float32),
      'terminals': np.zeros(n, bool),
      'timeouts': np.zeros(n, bool),
  }
  data['terminals'][3] = True     # episode rows 0-3, terminal
  data['timeouts'][7] = True      # episode rows 4-7, time limit
  # rows 8-9: unfinished
  if next_obs:
    data['next_observations'] = data['observations'] + 0.5
  data.update(override)
  with h5py.File(path, 'w') as f:
    for k, v in data.items():
      if v is not None:
        f[k] = v
  return data


def test_d4rl_with_next_observations(tmp_path):
  path = str(tmp_path / 'hopper.hdf5')
  data = _write_d4rl(path, next_obs=True)
  episodes, meta = md.load_d4rl_hdf5(path, env_name='hopper', ref_min_score=0,
                                     ref_max_score=10)
  assert [e.length for e in episodes] == [4, 4, 2]
  assert [bool(e.terminations[-1]) for e in episodes] == [True, False, False]
  assert [bool(e.truncations[-1]) for e in episodes] == [False, True, False]
  np.testing.assert_array_equal(episodes[1].observations[:4],
                                data['observations'][4:8])
  np.testing.assert_array_equal(episodes[1].observations[4],
                                data['next_observations'][7])
  np.testing.assert_array_equal(episodes[1].rewards, [4, 5, 6, 7])
  assert meta['env_name'] == 'Hopper-v5' and meta['num_steps'] == 10
  assert meta['ref_max_score'] == 10.0


def test_d4rl_without_next_observations(tmp_path):
  path = str(tmp_path / 'hopper.hdf5')
  data = _write_d4rl(path)
  episodes, _ = md.load_d4rl_hdf5(path)
  # Terminal: kept whole, last observation repeated. Timeout / unfinished:
  # the last step (whose next state is unknown) is dropped.
  assert [e.length for e in episodes] == [4, 3, 1]
  np.testing.assert_array_equal(episodes[0].observations[4],
                                data['observations'][3])
  np.testing.assert_array_equal(episodes[1].observations[3],
                                data['observations'][7])
  assert episodes[1].truncations[-1] and not episodes[1].terminations[-1]
  assert not episodes[2].truncations[-1] and not episodes[2].terminations[-1]
  _, meta = md.load_source(f'd4rl:{path}')
  assert meta['dataset_id'] == path


# ------------------------------------------------------------- bad input
def test_missing_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="'maze/none-v0'.*never"):
    md.load_minari_dataset(str(tmp_path), 'maze/none-v0')
  with pytest.raises(FileNotFoundError, match='nothere.hdf5'):
    md.load_d4rl_hdf5(str(tmp_path / 'nothere.hdf5'))
  with pytest.raises(FileNotFoundError):
    md.load_source(f'minari:{tmp_path}:maze/none-v0')


def test_bad_sources():
  assert md.parse_source('minari:/a:b:ns/x-v0') == md.MinariSource('/a:b', 'ns/x-v0')
  assert md.parse_source('d4rl:/x.hdf5') == md.D4rlSource('/x.hdf5')
  for spec in ('minari:/only_root', 'd4rl:', 'tfds:/x:y', 'nonsense'):
    with pytest.raises(ValueError, match='minari:ROOT:DATASET_ID'):
      md.parse_source(spec)
  assert md.is_continuous_source('d4rl:/x') and not md.is_continuous_source('dopamine:/x')


@pytest.mark.parametrize('change,field', [
    (lambda e: e._replace(observations=e.observations[:, :5]), 'observations.*obs_dim = 6'),
    (lambda e: e._replace(actions=e.actions[:, :1]), 'actions.*act_dim = 2'),
    (lambda e: e._replace(actions=np.full_like(e.actions, 1.5)), 'actions.*\\[-1, 1\\]'),
    (lambda e: e._replace(observations=np.where(
        np.arange(e.observations.size).reshape(e.observations.shape) == 3,
        np.nan, e.observations)), 'observations.*NaN'),
    (lambda e: e._replace(rewards=np.r_[e.rewards[:-1], np.inf]), 'rewards.*NaN or infinite'),
    (lambda e: e._replace(rewards=e.rewards[:-1]), 'rewards.*shape'),
    (lambda e: e._replace(observations=e.observations[:-1]), 'observations.*T \\+ 1'),
    (lambda e: e._replace(terminations=np.r_[True, e.terminations[1:]]), 'terminations.*before the last'),
])
def test_bad_episodes_named_on_write(tmp_path, episodes, change, field):
  bad = list(episodes)
  bad[1] = change(bad[1])
  with pytest.raises(ValueError, match=f"'maze/bad-v0' episode 1: field \"{field}"):
    md.write_minari_dataset(str(tmp_path), 'maze/bad-v0', bad, MAZE, 0.0, 1.0)
  assert not os.path.exists(tmp_path / 'maze' / 'bad-v0')


def test_bad_write_arguments(tmp_path, episodes):
  with pytest.raises(ValueError, match='env_name.*Unknown'):
    md.write_minari_dataset(str(tmp_path), 'maze/x-v0', episodes, 'Nope-v1', 0, 1)
  with pytest.raises(ValueError, match='Malformed'):
    md.write_minari_dataset(str(tmp_path), 'no version', episodes, MAZE, 0, 1)
  with pytest.raises(ValueError, match='ref_max_score.*equal'):
    md.write_minari_dataset(str(tmp_path), 'maze/x-v0', episodes, MAZE, 1, 1)
  with pytest.raises(ValueError, match='ref_min_score.*finite'):
    md.write_minari_dataset(str(tmp_path), 'maze/x-v0', episodes, MAZE,
                            float('nan'), 1)


def test_dataset_for_another_environment(tmp_path, episodes):
  md.write_minari_dataset(str(tmp_path), 'maze/test-v0', episodes, MAZE, 0, 1)
  with pytest.raises(ValueError, match='env_name.*PointMaze_UMaze-v3.*Hopper-v5'):
    md.load_minari_dataset(str(tmp_path), 'maze/test-v0', env_name='Hopper-v5')
  # Same dimensions, other maze: allowed only if the name matches.
  with pytest.raises(ValueError, match='env_name'):
    md.load_minari_dataset(str(tmp_path), 'maze/test-v0',
                           env_name='PointMaze_Large-v3')


def test_d4rl_bad_input(tmp_path):
  path = str(tmp_path / 'd.hdf5')
  _write_d4rl(path, timeouts=None)
  with pytest.raises(ValueError, match='d.hdf5: missing field timeouts'):
    md.load_d4rl_hdf5(path)
  _write_d4rl(path, obs_dim=5)
  with pytest.raises(ValueError, match='d.hdf5 episode 0.*"observations".*obs_dim = 11'):
    md.load_d4rl_hdf5(path, env_name='Hopper-v5')
  _write_d4rl(path, act_dim=4)
  with pytest.raises(ValueError, match='"actions".*act_dim = 3'):
    md.load_d4rl_hdf5(path, env_name='Hopper-v5')
  actions = np.zeros((10, 3), np.float32)
  actions[5, 1] = -1.2
  _write_d4rl(path, actions=actions)
  with pytest.raises(ValueError, match='episode 1 \\(rows 4-6\\): field "actions".*1.2'):
    md.load_d4rl_hdf5(path)
  _write_d4rl(path, rewards=np.r_[np.zeros(9), np.nan].astype(np.float32),
              next_observations=np.zeros((10, 11), np.float32))
  with pytest.raises(ValueError, match='episode 2.*"rewards".*NaN'):
    md.load_d4rl_hdf5(path)
  _write_d4rl(path, rewards=np.zeros(9, np.float32))
  with pytest.raises(ValueError, match='"rewards" has 9 rows'):
    md.load_d4rl_hdf5(path)
  with open(path, 'w') as f:
    f.write('not hdf5')
  with pytest.raises(ValueError, match='not a readable HDF5'):
    md.load_d4rl_hdf5(path)
