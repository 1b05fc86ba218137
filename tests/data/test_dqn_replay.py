"""Dopamine files: writer semantics, lazy reading, episodes, subsets, errors."""
import gzip
import os
import shutil

import numpy as np
import pytest

from tests.data import helpers
from tf_offline_q.data import dqn_replay


def test_writer_follows_dopamine_add():
  """Padding before each episode, add_count, invalid_range, wrap-around."""
  w = dqn_replay.DopamineReplayWriter(capacity=12, stack_size=4,
                                      update_horizon=1, frame_shape=(2, 2))
  frame = lambda v: np.full((2, 2), v, np.uint8)
  for t in range(3):  # episode 1: 3 steps, terminal
    w.add(frame(10 + t), t + 1, 1.0, t == 2)
  w.add(frame(20), 5, 2.0, False)  # episode 2 starts
  store = w._store  # pylint: disable=protected-access
  # [pad pad pad e1 e1 e1 pad pad pad e2 ...]
  np.testing.assert_array_equal(store['terminal'][:10],
                                [0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(store['action'][:10],
                                [0, 0, 0, 1, 2, 3, 0, 0, 0, 5])
  assert store['observation'][6:9].max() == 0
  assert w.add_count == 10
  # Dopamine: cursor - update_horizon .. cursor + stack_size - 1.
  np.testing.assert_array_equal(w.invalid_range(), [9, 10, 11, 0, 1])
  for t in range(4):
    w.add(frame(30 + t), 0, 0.0, False)
  assert w.add_count == 14 and w.cursor() == 2
  assert store['observation'][1, 0, 0] == 33  # wrapped over index 1


def test_episodes_of_a_buffer_that_never_wrapped(tmp_path):
  lengths = [5, 1, 9, 3]
  episodes, suffixes = helpers.write_synthetic_run(
      str(tmp_path), lengths, capacity=1000, terminal_last=False)
  got = list(dqn_replay.iterate_episodes(str(tmp_path)))
  assert [len(e) for e in got] == lengths
  for (frames, actions, rewards, terminal), e in zip(episodes, got):
    np.testing.assert_array_equal(e.observation, frames)
    np.testing.assert_array_equal(e.action, actions)
    np.testing.assert_array_equal(e.reward, rewards)
    assert e.terminal == terminal
  assert got[-1].at_cursor and not got[0].at_cursor
  assert all(e.sampleable_mask()[:-1].all() for e in got)


def test_episodes_of_a_wrapped_buffer(synthetic_run):
  replay_dir, episodes, suffixes = synthetic_run
  info = dqn_replay.read_checkpoint_info(replay_dir, suffixes[-1])
  assert info.is_full
  got = list(dqn_replay.iterate_episodes(replay_dir))
  assert len(got) == len(info.episodes)
  # Every episode is a run of consecutive serials (frames added in order), so
  # the pieces are whole episodes except the oldest (cut by the cursor).
  by_first_serial = {}
  serial = 0
  for frames, actions, rewards, terminal in episodes:
    by_first_serial[serial] = (frames, actions, rewards, terminal)
    serial += len(frames)
  oldest = min(got, key=lambda e: helpers.decode_serial(e.observation[0]))
  for e in got:
    serials = [helpers.decode_serial(f) for f in e.observation]
    assert serials == list(range(serials[0], serials[0] + len(e)))
    if e is oldest:
      assert not e.sampleable_mask()[:3].any()  # headless: stack incomplete
      continue
    frames, actions, rewards, terminal = by_first_serial[serials[0]]
    np.testing.assert_array_equal(e.observation, frames)
    np.testing.assert_array_equal(e.action, actions)
    np.testing.assert_array_equal(e.reward, rewards)
    assert e.terminal == terminal
  # The newest episode ends at the cursor.
  newest = max(got, key=lambda e: helpers.decode_serial(e.observation[-1]))
  assert newest.at_cursor
  # Episodes wrapping around the buffer's end are read whole.
  assert any(len(ep.segments) == 2 for ep in info.episodes)


def test_read_ranges_streams_the_right_rows(synthetic_run):
  replay_dir, _, suffixes = synthetic_run
  path = dqn_replay.checkpoint_filename(replay_dir, '$store$_observation',
                                        suffixes[-1])
  full = helpers.load_gz(path)
  f = dqn_replay.NpyGzFile(path)
  assert f.shape == full.shape and f.dtype == full.dtype
  ranges = [(0, 3), (10, 11), (50, 90), (159, 160)]
  for (a, b), rows in zip(ranges, f.read_ranges(ranges)):
    np.testing.assert_array_equal(rows, full[a:b])


def test_uniform_subset_is_seeded_and_sized(synthetic_run):
  replay_dir, _, _ = synthetic_run
  total = len(dqn_replay.read_checkpoint_info(replay_dir, 0).episodes)
  ids = lambda **kw: [(e.checkpoint_id, e.episode_id) for e in
                      dqn_replay.iterate_episodes(replay_dir, **kw)]
  a = ids(fraction=0.5, seed=7)
  assert a == ids(fraction=0.5, seed=7)
  assert len(a) == round(0.5 * total)
  assert a != ids(fraction=0.5, seed=8)
  assert len(ids(fraction=1.0)) == total


def test_first_subset_keeps_a_storage_prefix(synthetic_run):
  replay_dir, _, _ = synthetic_run
  info = dqn_replay.read_checkpoint_info(replay_dir, 0)
  selection = dqn_replay.read_selection(replay_dir, fraction=0.25, mode='first')
  kept = [e for _, eps in selection for e in eps]
  limit = round(0.25 * info.capacity)
  indices = np.concatenate([e.indices() for e in kept])
  assert indices.max() < limit
  # Every non-padding index below the limit is kept.
  full_idx = np.concatenate([e.indices() for e in info.episodes])
  assert set(indices.tolist()) == set(full_idx[full_idx < limit].tolist())


def _copy(replay_dir, tmp_path):
  out = str(tmp_path / 'copy')
  shutil.copytree(replay_dir, out)
  return out


def _rewrite(path, array):
  with gzip.open(path, 'wb') as f:
    np.save(f, array)


def test_missing_file_is_named(synthetic_run, tmp_path):
  d = _copy(synthetic_run[0], tmp_path)
  victim = dqn_replay.checkpoint_filename(d, '$store$_reward', 0)
  os.remove(victim)
  with pytest.raises(dqn_replay.DataError, match=r'\$store\$_reward_ckpt.0'):
    list(dqn_replay.iterate_episodes(d))
  with pytest.raises(FileNotFoundError, match='nowhere'):
    dqn_replay.list_checkpoints(str(tmp_path / 'nowhere'))


def test_truncated_gzip_is_named(synthetic_run, tmp_path):
  d = _copy(synthetic_run[0], tmp_path)
  victim = dqn_replay.checkpoint_filename(d, '$store$_observation', 0)
  data = open(victim, 'rb').read()
  with open(victim, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(dqn_replay.DataError,
                     match=r'observation_ckpt.0.gz.*(truncated|ends early)'):
    list(dqn_replay.iterate_episodes(d))


def test_lengths_that_disagree_are_named(synthetic_run, tmp_path):
  d = _copy(synthetic_run[0], tmp_path)
  victim = dqn_replay.checkpoint_filename(d, '$store$_action', 0)
  _rewrite(victim, helpers.load_gz(victim)[:-5])
  with pytest.raises(dqn_replay.DataError, match=r'action has 155 entries'):
    list(dqn_replay.iterate_episodes(d))


def test_wrong_observation_shape_is_named(synthetic_run, tmp_path):
  d = _copy(synthetic_run[0], tmp_path)
  victim = dqn_replay.checkpoint_filename(d, '$store$_observation', 0)
  _rewrite(victim, helpers.load_gz(victim)[:, :80, :80])
  with pytest.raises(dqn_replay.DataError,
                     match=r'observation_ckpt.0.gz: observation frames have '
                     r'shape \(80, 80\)'):
    list(dqn_replay.iterate_episodes(d))


def test_wrong_dtype_is_named(synthetic_run, tmp_path):
  d = _copy(synthetic_run[0], tmp_path)
  victim = dqn_replay.checkpoint_filename(d, '$store$_terminal', 0)
  _rewrite(victim, helpers.load_gz(victim).astype(np.float32))
  with pytest.raises(dqn_replay.DataError, match=r"'terminal' has dtype"):
    list(dqn_replay.iterate_episodes(d))


def test_wrong_recorded_stack_size_is_detected(synthetic_run):
  with pytest.raises(dqn_replay.DataError, match='wrong stack_size'):
    list(dqn_replay.iterate_episodes(synthetic_run[0], stack_size=6))


def test_empty_subset_and_bad_arguments(synthetic_run):
  d = synthetic_run[0]
  with pytest.raises(dqn_replay.DataError, match='Empty subset'):
    list(dqn_replay.iterate_episodes(d, fraction=0.001))
  with pytest.raises(ValueError, match='fraction'):
    list(dqn_replay.iterate_episodes(d, fraction=0.0))
  with pytest.raises(ValueError, match='mode'):
    list(dqn_replay.iterate_episodes(d, mode='last'))


def test_unknown_game_is_named(tmp_path):
  with pytest.raises(ValueError, match='Pongg'):
    dqn_replay.dopamine_replay_dir(str(tmp_path), 'Pongg', 1)
  assert dqn_replay.dopamine_replay_dir('/r', 'space_invaders', 2) == (
      '/r/SpaceInvaders/2/replay_logs')


def test_generated_ale_files_read_like_dopamine(ale_replay_dir):
  """Real ALE play: episodes partition the non-padding indices."""
  suffixes = dqn_replay.list_checkpoints(ale_replay_dir)
  assert suffixes == [0, 1, 2]
  for s in suffixes:
    info = dqn_replay.read_checkpoint_info(ale_replay_dir, s)
    terminal = helpers.load_gz(info.filename('$store$_terminal'))
    idx = np.concatenate([e.indices() for e in info.episodes])
    assert len(idx) == len(set(idx.tolist())) == info.num_steps
    # Each terminal index ends an episode, and only those.
    ends = {int(e.indices()[-1]) for e in info.episodes if e.terminal}
    assert ends == set(np.flatnonzero(terminal).tolist())


def test_non_finite_rewards_and_negative_actions_are_named(tmp_path):
  replay_dir = str(tmp_path / 'replay_logs')
  helpers.write_synthetic_run(replay_dir, [5, 6, 7], capacity=40)
  path = dqn_replay.checkpoint_filename(replay_dir, '$store$_reward', 0)
  reward = helpers.load_gz(path)
  reward[12] = np.nan
  with gzip.open(path, 'wb') as f:
    np.save(f, reward)
  with pytest.raises(dqn_replay.DataError,
                     match=r'reward_ckpt\.0\.gz: reward nan at index 12'):
    list(dqn_replay.iterate_episodes(replay_dir, fraction=1.0))
  reward[12] = 1.0
  with gzip.open(path, 'wb') as f:
    np.save(f, reward)
  path = dqn_replay.checkpoint_filename(replay_dir, '$store$_action', 0)
  action = helpers.load_gz(path)
  action[14] = -2
  with gzip.open(path, 'wb') as f:
    np.save(f, action)
  with pytest.raises(dqn_replay.DataError,
                     match=r'action_ckpt\.0\.gz: action -2 at index 14'):
    list(dqn_replay.iterate_episodes(replay_dir, fraction=1.0))
  with pytest.raises(dqn_replay.DataError, match='reward inf at step 2'):
    dqn_replay.Episode(np.zeros((3, 84, 84), np.uint8), np.zeros(3, np.int64),
                       np.array([0, 1, np.inf], np.float32), True)
