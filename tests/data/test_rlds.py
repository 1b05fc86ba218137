"""TFDS RLDS: rlu_atari's features, conversion round trip, one code path."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.rl_unplugged import atari_utils

from tests.data import helpers
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import reverb_stream
from tf_offline_q.data import rlds

NAME = 'dqn_replay_atari/Breakout_run_1'


@pytest.fixture(scope='module')
def converted(ale_replay_dir, tmp_path_factory):
  """The generated Breakout files, converted."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  rlds.convert(ale_replay_dir, data_dir, 'breakout', 1)
  return data_dir


def test_features_are_exactly_rlu_atari():
  ours = rlds.features_dict()
  theirs = atari_utils.features_dict()  # TFDS's own rlu_atari builder
  assert ours.get_serialized_info() == theirs.get_serialized_info()
  assert repr(ours) == repr(theirs)
  rlds.check_features(theirs)


def test_feature_mismatch_is_named():
  bad = tfds.features.FeaturesDict({
      'steps': tfds.features.Dataset({
          'observation': tfds.features.Image(shape=(64, 64, 1)),
          'action': np.int64, 'reward': np.float32, 'is_terminal': np.bool_,
          'is_first': np.bool_, 'is_last': np.bool_, 'discount': np.float32}),
      'checkpoint_id': np.int64, 'episode_id': np.int64,
      'episode_return': np.float32})
  with pytest.raises(rlds.DataError, match='steps/observation'):
    rlds.check_features(bad, where='x')


def test_conversion_round_trip(ale_replay_dir, converted):
  """Same frames, actions, rewards and episode boundaries after converting."""
  # Dopamine episodes come in storage order, RLDS ones in (checkpoint,
  # episode) order.
  key = lambda e: (e.checkpoint_id, e.episode_id)
  want = sorted(dqn_replay.iterate_episodes(ale_replay_dir), key=key)
  got = list(rlds.iterate_episodes(converted, NAME))
  assert len(got) == len(want) > 3
  for a, b in zip(want, got):
    assert (a.checkpoint_id, a.episode_id) == (b.checkpoint_id, b.episode_id)
    assert a.terminal == b.terminal
    np.testing.assert_array_equal(a.observation, b.observation)
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.reward, b.reward)
  builder = rlds.load_builder(converted, NAME)
  assert sorted(builder.info.splits) == ['checkpoint_00', 'checkpoint_01',
                                         'checkpoint_02']
  # RLDS layout: a terminal episode has one extra is_terminal step.
  ds = builder.as_dataset(split='checkpoint_00', shuffle_files=False)
  first = next(iter(tfds.as_numpy(ds)))
  steps = list(first['steps'])
  ep = want[0]
  assert len(steps) == len(ep) + int(ep.terminal)
  assert steps[0]['is_first'] and steps[-1]['is_last']
  assert steps[-1]['is_terminal'] == ep.terminal


def test_same_subset_from_both_sources(ale_replay_dir, converted):
  ids = lambda episodes: sorted((e.checkpoint_id, e.episode_id)
                                for e in episodes)
  a = ids(dqn_replay.iterate_episodes(ale_replay_dir, fraction=0.5, seed=11))
  b = ids(rlds.iterate_episodes(converted, NAME, fraction=0.5, seed=11))
  assert a == b
  # 'first': a prefix of every checkpoint's steps, the last episode cut.
  first = list(rlds.iterate_episodes(converted, NAME, fraction=0.3,
                                     mode='first'))
  every = list(rlds.iterate_episodes(converted, NAME))
  for ckpt in {e.checkpoint_id for e in every}:
    total = sum(len(e) + e.terminal for e in every if e.checkpoint_id == ckpt)
    kept = [e for e in first if e.checkpoint_id == ckpt]
    assert [e.episode_id for e in kept] == list(range(len(kept)))
    assert 0 < sum(len(e) + e.terminal for e in kept) <= round(0.3 * total)


def test_tfds_source_fills_a_table(converted):
  """The RLDS path goes through the same writer and sampling as Dopamine's."""
  server = reverb_stream.ReplayServer(['breakout'])
  try:
    source = reverb_stream.parse_source(f'tfds:{converted}:{NAME}')
    assert source == reverb_stream.TfdsSource(converted, NAME)
    stats = server.fill_from('Breakout', source, fraction=1.0)
    assert stats.items > 0 and server.is_filled('Breakout')
    traj = next(iter(reverb_stream.make_dataset(server.address, 'Breakout',
                                                batch_size=4)))
    assert traj.observation.shape == (4, 4, 84, 84, 4)
  finally:
    server.stop()


def test_episode_rlds_mapping_is_inverse():
  frames, actions, rewards, _ = helpers.synthetic_episodes([5], seed=1)[0]
  for terminal in (True, False):
    ep = dqn_replay.Episode(frames, actions, rewards, terminal, 2, 7)
    example = rlds.episode_to_rlds(ep, encode_png=False)
    assert len(example['steps']['action']) == 5 + int(terminal)
    back = rlds.episode_from_rlds(example['steps'], 2, 7)
    np.testing.assert_array_equal(back.observation, frames)
    np.testing.assert_array_equal(back.action, actions)
    assert back.terminal == terminal
  steps = dict(rlds.episode_to_rlds(ep, encode_png=False)['steps'])
  steps['is_last'] = np.zeros(5, bool)
  with pytest.raises(rlds.DataError, match='steps/is_last'):
    rlds.episode_from_rlds(steps, 2, 7)


def test_non_finite_rewards_of_an_rlds_episode_are_named():
  frames, actions, rewards, _ = helpers.synthetic_episodes([5], seed=1)[0]
  ep = dqn_replay.Episode(frames, actions, rewards, True, 2, 7)
  steps = dict(rlds.episode_to_rlds(ep, encode_png=False)['steps'])
  steps['reward'] = steps['reward'].copy()
  steps['reward'][3] = np.nan
  with pytest.raises(rlds.DataError, match=r'ds episode \(checkpoint_id=2, '
                     r'episode_id=7\): steps/reward is nan at step 3'):
    rlds.episode_from_rlds(steps, 2, 7, where='ds')


def test_missing_dataset_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='rlu_atari/Pong_run_1'):
    list(rlds.iterate_episodes(str(tmp_path), 'rlu_atari/Pong_run_1'))


def test_interrupted_conversion_leaves_nothing(ale_replay_dir, tmp_path,
                                               monkeypatch):
  data_dir = str(tmp_path / 'tfds')
  real = dqn_replay.iterate_episodes

  def dies_midway(*args, **kwargs):
    for i, episode in enumerate(real(*args, **kwargs)):
      if i == 1:
        raise KeyboardInterrupt('simulated interruption')
      yield episode
  monkeypatch.setattr(dqn_replay, 'iterate_episodes', dies_midway)
  with pytest.raises(KeyboardInterrupt):
    rlds.convert(ale_replay_dir, data_dir, 'Breakout', 1)
  assert os.listdir(data_dir) == []
  monkeypatch.setattr(dqn_replay, 'iterate_episodes', real)
  path = rlds.convert(ale_replay_dir, data_dir, 'Breakout', 1,
                      checkpoints=[1])
  assert os.path.isfile(os.path.join(path, 'dataset_info.json'))
  assert sorted(os.listdir(data_dir)) == ['dqn_replay_atari']
  with pytest.raises(FileExistsError):
    rlds.convert(ale_replay_dir, data_dir, 'Breakout', 1, checkpoints=[1])
