"""Reverb streaming: Dopamine-exact transitions, memory, servers, strategies."""
import glob
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from reverb.cc import schema_pb2
from tests.data import helpers
from tf_offline_q import specs
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import reverb_stream

GAMMA = 0.99


def _server(*tables, **kwargs):
  return reverb_stream.ReplayServer(list(tables), validate_games=False,
                                    **kwargs)


def _check_against_dopamine(replay_dir, suffix, k, n, num_batches=30,
                            batch_size=32):
  """Fills a table from the files; every sample equals Dopamine's."""
  ref = helpers.DopamineReference(replay_dir, suffix, k, n, GAMMA)
  valid = ref.valid_indices()
  serial_to_index = ref.index_of_serial()
  server = _server('T', stack_size=k, n_step=n)
  try:
    stats = server.fill_from(
        'T', reverb_stream.DopamineSource(replay_dir, (suffix,),
                                          recorded_stack_size=k),
        fraction=1.0)
    # One item per index Dopamine can sample, no more, no less.
    assert stats.items == server.num_items('T') == len(valid)
    ds = reverb_stream.make_dataset(server.address, 'T', batch_size,
                                    n_step=n, stack_size=k)
    seen = set()
    kinds = {'start': 0, 'terminal': 0, 'middle': 0}
    for traj in ds.take(num_batches).as_numpy_iterator():
      obs = traj.observation
      assert obs.shape == (batch_size, n + 1, 84, 84, k)
      for b in range(batch_size):
        index = serial_to_index[helpers.decode_serial(obs[b, 0, :, :, -1])]
        seen.add(index)
        want = ref.transition(index)
        ret, done = helpers.n_step_from_trajectory(
            traj.reward[b], traj.discount[b], GAMMA, n)
        assert np.array_equal(obs[b, 0], want['state']), index
        assert traj.action[b, 0] == want['action']
        assert traj.reward[b, 0] == ref.reward[index]
        assert ret == pytest.approx(want['reward'], abs=1e-5)
        assert done == want['terminal']
        if not done:
          assert np.array_equal(obs[b, n], want['next_state']), index
        if not want['state'][..., 0].any():
          kinds['start'] += 1
        elif want['terminal']:
          kinds['terminal'] += 1
        else:
          kinds['middle'] += 1
    assert seen <= set(valid)
    assert len(seen) > 0.8 * len(valid)
    assert min(kinds.values()) > 0, kinds
  finally:
    server.stop()


def test_transitions_equal_dopamine_wrapped_buffer(synthetic_run):
  replay_dir, _, suffixes = synthetic_run
  _check_against_dopamine(replay_dir, suffixes[-1], k=4, n=3)


def test_transitions_equal_dopamine_other_layouts(tmp_path):
  lengths = [2, 11, 1, 6, 17, 3, 9, 4, 1, 13]
  helpers.write_synthetic_run(str(tmp_path / 'a'), lengths, capacity=500,
                              terminal_last=False, seed=5)
  _check_against_dopamine(str(tmp_path / 'a'), 0, k=4, n=1, num_batches=20)
  helpers.write_synthetic_run(str(tmp_path / 'b'), lengths, capacity=60,
                              terminal_last=True, seed=6, stack_size=2)
  _check_against_dopamine(str(tmp_path / 'b'), 0, k=2, n=5, num_batches=20)


def test_trajectory_matches_the_shared_spec(synthetic_run):
  server = _server('T')
  try:
    server.fill_from('T', reverb_stream.DopamineSource(synthetic_run[0]),
                     fraction=1.0)
    ds = reverb_stream.make_dataset(server.address, 'T', batch_size=8)
    spec = specs.trajectory_spec()
    tf.nest.assert_same_structure(ds.element_spec, spec)
    for got, want in zip(tf.nest.flatten(ds.element_spec),
                         tf.nest.flatten(spec)):
      assert got.dtype == want.dtype
      assert got.shape.as_list() == [8, 4] + want.shape.as_list()
    traj = next(iter(ds))
    step_type = traj.step_type.numpy()
    assert set(np.unique(step_type).tolist()) <= {0, 1, 2}  # FIRST/MID/LAST
    # A step with discount 0 is followed by LAST.
    d0 = traj.discount.numpy() == 0
    assert (traj.next_step_type.numpy()[d0] == ts.StepType.LAST).all()
  finally:
    server.stop()


def test_frames_are_stored_once(tmp_path):
  """N steps in the table are about N frames in Reverb's chunks, not 7N."""
  lengths = [50, 80, 70, 100, 100]
  episodes = helpers.synthetic_episodes(lengths, seed=2)
  eps = [dqn_replay.Episode(f, a, r, t) for f, a, r, t in episodes]
  ckpt = str(tmp_path / 'ckpt')
  server = _server('T', checkpoint_dir=ckpt)
  try:
    stats = server.fill('T', eps)
    n = sum(lengths)
    assert stats.steps == n
    assert stats.items == n  # one item per step (terminal episodes)
    server.checkpoint()
  finally:
    server.stop()
  path = sorted(glob.glob(os.path.join(ckpt, '*', 'chunks.tfrecord')))[-1]
  frame_chunks = {}  # chunk key -> (rows, compressed bytes)
  for record in tf.data.TFRecordDataset(path, compression_type='ZLIB'):
    chunk = schema_pb2.ChunkData.FromString(record.numpy())
    for tensor in chunk.data.tensors:
      dims = [d.size for d in tensor.tensor_shape.dim]
      if dims[1:] == [84, 84]:
        # A checkpoint may list a chunk twice; the server stores it once.
        frame_chunks[chunk.chunk_key] = (dims[0], len(record.numpy()))
  frame_rows = sum(rows for rows, _ in frame_chunks.values())
  fillers = 3 + 3  # stack_size - 1 before, n_step after
  assert frame_rows == n + fillers, (frame_rows, n)
  # Noise frames do not compress: the bytes are ~N frames too.
  frame_bytes = sum(size for _, size in frame_chunks.values())
  assert frame_bytes < 1.05 * (n + fillers) * 84 * 84
  assert len(frame_chunks) >= n / 7


def test_two_servers_feed_one_learner(tmp_path):
  """Two shards of one game on two loopback servers, interleaved."""
  episodes = helpers.synthetic_episodes([20, 30, 25, 15, 35, 40], seed=4)
  eps = [dqn_replay.Episode(f, a, r, t, 0, i)
         for i, (f, a, r, t) in enumerate(episodes)]
  servers = [_server('T'), _server('T')]
  try:
    for shard, server in enumerate(servers):
      server.fill('T', [e for i, e in enumerate(eps) if i % 2 == shard])
    shard_of_serial = {}
    for i, e in enumerate(eps):
      for f in e.observation:
        shard_of_serial[helpers.decode_serial(f)] = i % 2
    ds = reverb_stream.make_dataset([s.address for s in servers], 'T',
                                    batch_size=16)
    counts = [0, 0]
    for traj in ds.take(20):
      for b in range(16):
        serial = helpers.decode_serial(traj.observation[b, 0, :, :, -1])
        counts[shard_of_serial[serial]] += 1
    assert min(counts) > 0.3 * sum(counts), counts
    with pytest.raises(ValueError, match="'Other' is on none"):
      reverb_stream.make_dataset([s.address for s in servers], ['T', 'Other'],
                                 batch_size=4)
    with pytest.raises(ValueError, match='signature'):
      reverb_stream.make_dataset(servers[0].address, 'T', batch_size=4,
                                 n_step=1)
  finally:
    for server in servers:
      server.stop()


def test_restarted_server_restores_without_source_files(synthetic_run,
                                                        tmp_path):
  replay_dir = str(tmp_path / 'source')
  shutil.copytree(synthetic_run[0], replay_dir)
  ckpt = str(tmp_path / 'ckpt')
  server = _server('T', checkpoint_dir=ckpt)
  stats = server.fill_from('T', reverb_stream.DopamineSource(replay_dir),
                           fraction=1.0)
  assert server.is_filled('T')
  server.checkpoint()
  server.stop()
  del server
  shutil.rmtree(replay_dir)  # a restart must not need the files
  restarted = _server('T', checkpoint_dir=ckpt)
  try:
    assert restarted.is_filled('T')
    assert restarted.num_items('T') == stats.items
    traj = next(iter(reverb_stream.make_dataset(restarted.address, 'T', 4)))
    assert traj.observation.shape == (4, 4, 84, 84, 4)
    with pytest.raises(RuntimeError, match='already filled'):
      restarted.fill('T', [])
  finally:
    restarted.stop()
  with pytest.raises(ValueError, match='restored from .* n_step=1'):
    _server('T', checkpoint_dir=ckpt, n_step=1)


def test_distributed_dataset_batches_per_replica(synthetic_run):
  cpus = tf.config.list_logical_devices('CPU')
  strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:2]])
  server = _server('T')
  try:
    server.fill_from('T', reverb_stream.DopamineSource(synthetic_run[0]),
                     fraction=1.0)
    dist = reverb_stream.make_distributed_dataset(
        strategy, server.address, 'T', global_batch_size=8)
    batch = next(iter(dist))
    per_replica = strategy.experimental_local_results(batch.observation)
    # tests/conftest.py makes two logical CPUs.
    assert len(per_replica) == strategy.num_replicas_in_sync == 2
    for obs in per_replica:
      assert obs.shape == (8 // len(per_replica), 4, 84, 84, 4)
    with pytest.raises(ValueError, match='divisible'):
      reverb_stream.make_distributed_dataset(strategy, server.address, 'T',
                                             global_batch_size=7)
  finally:
    server.stop()


def test_unknown_game_table_is_named():
  with pytest.raises(ValueError, match='Pongg'):
    reverb_stream.ReplayServer(['Pongg'])


def test_step_types_and_item_starts():
  st, nst = reverb_stream.step_types(4, terminal=True)
  np.testing.assert_array_equal(st, [ts.StepType.FIRST] + [ts.StepType.MID] * 3)
  np.testing.assert_array_equal(nst, [1, 1, 1, 2])
  st, nst = reverb_stream.step_types(3, terminal=False)
  np.testing.assert_array_equal(st, [0, 1, 2])
  np.testing.assert_array_equal(nst, [1, 2, 0])
  frames = np.zeros((6, 84, 84), np.uint8)
  ep = lambda terminal, **kw: dqn_replay.Episode(
      frames, np.zeros(6, np.int64), np.zeros(6, np.float32), terminal, **kw)
  np.testing.assert_array_equal(reverb_stream.item_starts(ep(True), 3),
                                range(6))
  np.testing.assert_array_equal(reverb_stream.item_starts(ep(False), 3),
                                range(3))
  np.testing.assert_array_equal(
      reverb_stream.item_starts(ep(True, at_cursor=True), 2), range(4))


def test_packed_and_plain_stacking_agree():
  rng = np.random.default_rng(0)
  frames = tf.constant(rng.integers(0, 256, (8, 7, 84, 84), dtype=np.uint8))
  step_type = tf.constant(rng.choice([0, 1, 1, 2], size=(8, 7)).astype(
      np.int32))
  packed = reverb_stream.stack_frames(frames, step_type, 4, 3, packed=True)
  plain = reverb_stream.stack_frames(frames, step_type, 4, 3, packed=False)
  np.testing.assert_array_equal(packed.numpy(), plain.numpy())
  # Frames before the newest FIRST of a stack are zero.
  f, st = frames.numpy(), step_type.numpy()
  for b in range(8):
    for t in range(4):
      for j in range(4):
        later_first = (st[b, t + j + 1:t + 4] == 0).any()
        want = 0 if later_first else f[b, t + j]
        np.testing.assert_array_equal(plain.numpy()[b, t, :, :, j], want)


def test_failed_fill_is_not_ready_and_retry_starts_empty():
  episodes = [dqn_replay.Episode(f, a, r, t) for f, a, r, t in
              helpers.synthetic_episodes([10, 12, 9], seed=8)]

  def breaks_midway():
    yield episodes[0]
    raise dqn_replay.DataError('bad file')
  server = _server('T')
  try:
    with pytest.raises(dqn_replay.DataError, match='bad file'):
      server.fill('T', breaks_midway())
    assert not server.is_filled('T') and server.num_items('T') > 0
    stats = server.fill('T', episodes)
    assert server.is_filled('T')
    assert server.num_items('T') == stats.items == 31
  finally:
    server.stop()
