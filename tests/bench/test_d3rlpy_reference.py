"""The d3rlpy reference's project-venv parts: the transition export and the action server.

No torch, no d3rlpy: the export is checked against the project's Reverb
sampling path and the independent Dopamine reference of `tests/data/helpers`,
and the protocol against a fake NumPy policy server (`fake_action_server.py`).
"""
import io
import json
import os
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from bench.d3rlpy_reference import client
from bench.d3rlpy_reference import export
from bench.d3rlpy_reference import protocol
from bench.d3rlpy_reference import run_reference
from bench.d3rlpy_reference import transitions
from tests.bench import fake_action_server
from tests.data import helpers
from tf_offline_q.agents import losses
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import reverb_stream

GAMMA = 0.99
LENGTHS = [2, 11, 1, 6, 17, 3, 9, 4, 1, 13]
FAKE_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake_action_server.py')


@pytest.fixture(scope='module')
def replay_dir(tmp_path_factory):
  """Coded-frame episodes (the last one cut, not terminal) as Dopamine files."""
  path = str(tmp_path_factory.mktemp('replay') / 'replay_logs')
  helpers.write_synthetic_run(path, LENGTHS, capacity=500, terminal_last=False, seed=5)
  return path


def _serial_to_step(table):
  return {helpers.decode_serial(frame): g for g, frame in enumerate(table.frames)}


def test_export_equals_reverb_samples_and_dopamine(replay_dir):
  table = export.build_table(f'dopamine:{replay_dir}', fraction=1.0, n_step=3)
  # The transitions are exactly those Dopamine could sample...
  ref = helpers.DopamineReference(replay_dir, 0, 4, 3, GAMMA)
  serial_to_index = ref.index_of_serial()
  starts = [serial_to_index[helpers.decode_serial(table.frames[g])] for g in table.starts]
  assert sorted(starts) == ref.valid_indices()
  step_of = _serial_to_step(table)
  # ...and every transition the Reverb path samples for train.py is the exported one.
  server = reverb_stream.ReplayServer(['T'], validate_games=False, n_step=3)
  try:
    stats = server.fill_from('T', reverb_stream.DopamineSource(replay_dir), fraction=1.0)
    assert stats.items == table.num_transitions
    dataset = reverb_stream.make_dataset(server.address, 'T', 32, n_step=3)
    seen = set()
    for traj in dataset.take(8).as_numpy_iterator():
      for b in range(32):
        g = step_of[helpers.decode_serial(traj.observation[b, 0, :, :, -1])]
        assert g in set(table.starts.tolist())
        seen.add(g)
        want = table.batch(np.array([g]), GAMMA, reward_clip=None)
        ret, done = helpers.n_step_from_trajectory(traj.reward[b], traj.discount[b], GAMMA, 3)
        assert np.array_equal(want.observation[0], traj.observation[b, 0])
        assert want.action[0] == traj.action[b, 0]
        assert want.n_step_return[0] == pytest.approx(ret, abs=1e-5)
        assert (want.alive[0] == 0) == done
        if not done:
          assert np.array_equal(want.next_observation[0], traj.observation[b, 3])
    assert len(seen) > 0.8 * table.num_transitions
  finally:
    server.stop()


def test_n_step_returns_equal_the_agents_and_clip(replay_dir):
  table = export.build_table(f'dopamine:{replay_dir}', fraction=1.0, n_step=3)
  steps = np.clip(table.starts[:, None] + np.arange(3), 0, len(table.frames) - 1)
  want_g, want_bootstrap = losses.n_step_return(
      tf.constant(np.clip(table.reward[steps], -1, 1)), tf.constant(table.discount[steps]),
      GAMMA)
  batch = table.batch(table.starts, GAMMA, reward_clip=1.0)
  np.testing.assert_allclose(batch.n_step_return, want_g.numpy(), atol=1e-5)
  np.testing.assert_allclose(GAMMA**3 * batch.alive, want_bootstrap.numpy(), atol=1e-6)
  assert (table.reward[steps] > 1).any()   # the clipping mattered
  sampled = table.sample(np.random.default_rng(0), 64, GAMMA)
  assert set(sampled.index.tolist()) <= set(table.starts.tolist())
  assert sampled.observation.shape == (64, 84, 84, 4)


def test_subset_export_equals_the_reader_and_round_trips(replay_dir, tmp_path):
  source = f'dopamine:{replay_dir}'
  table = export.build_table(source, fraction=0.5, subset_mode='uniform', data_seed=3, n_step=3)
  episodes = list(reverb_stream.iterate_source(reverb_stream.parse_source(source), 0.5,
                                               'uniform', 3))
  assert 0 < len(episodes) < len(LENGTHS)
  assert np.array_equal(table.frames, np.concatenate([e.observation for e in episodes]))
  assert np.array_equal(table.action, np.concatenate([e.action for e in episodes]))
  assert np.array_equal(table.discount, np.concatenate([e.discount for e in episodes]))
  assert table.num_transitions == sum(len(reverb_stream.item_starts(e, 3)) for e in episodes)
  path = str(tmp_path / 'transitions.npz')
  export.export(path, source, 0.5, 'uniform', 3, 3)
  loaded = transitions.TransitionTable.load(path)
  assert np.array_equal(loaded.starts, table.starts)
  assert loaded.meta['fraction'] == 0.5 and loaded.meta['n_step'] == 3
  with open(path, 'r+b') as f:
    f.truncate(100)
  with pytest.raises(ValueError, match='transitions.npz'):
    transitions.TransitionTable.load(path)


def test_protocol_round_trips_arrays_and_rejects_garbage():
  stream = io.BytesIO()
  arrays = [np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([-1, 7], np.int64),
            np.zeros((0, 3), np.float32)]
  for a in arrays:
    protocol.write_message(stream, {'cmd': 'echo', 'n': 1}, a)
  protocol.write_message(stream, {'cmd': 'hello'})
  stream.seek(0)
  for a in arrays:
    header, got = protocol.read_message(stream)
    assert header == {'cmd': 'echo', 'n': 1}
    assert got.dtype == a.dtype and np.array_equal(got, a)
  assert protocol.read_message(stream) == ({'cmd': 'hello'}, None)
  with pytest.raises(protocol.ProtocolError, match='pipe closed'):
    protocol.read_message(stream)
  with pytest.raises(protocol.ProtocolError, match='not this protocol'):
    protocol.read_message(io.BytesIO(b'step 100/300 ...\n' * 4))


def test_fake_server_policy_in_the_projects_evaluation(tmp_path):
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  from tf_offline_q.eval import evaluation  # pylint: disable=g-import-not-at-top
  log = str(tmp_path / 'server.log')
  with client.ServerProcess([sys.executable, FAKE_SERVER, '--num_actions=3', '--print_junk'],
                            log_path=log) as server:
    assert server.request('hello')[0]['num_actions'] == 3
    obs = np.random.default_rng(0).integers(0, 256, (2, 84, 84, 4), dtype=np.uint8)
    assert np.array_equal(server.request('echo', obs)[1], obs)
    assert server.request('train', steps=5)[0]['step'] == 5
    with pytest.raises(client.ServerError, match='asked to fail'):
      server.request('fail')
    with pytest.raises(client.ServerError, match='unknown command'):
      server.request('nonsense')
    env = games.make_env('MinAtar-Breakout', sticky_action_prob=0.25, max_episode_frames=200,
                         seed=0)
    policy = client.ServerPolicy(server, env.time_step_spec(), env.action_spec())
    played = []
    observer = lambda traj: played.append((np.array(traj.observation), int(traj.action)))
    result = evaluation.evaluate_policy(policy, env, num_steps=30, epsilon=0.0,
                                        max_episodes=3, seed=1, observers=[observer])
    env.close()
  assert result.num_steps >= min(30, sum(result.lengths)) and result.returns
  assert len(played) >= 30 or len(result.returns) == 3
  for observation, action in played:
    assert action == fake_action_server.fake_action(observation[None], 3)[0]
  with open(log) as f:
    assert 'a library printing to stdout' in f.read()   # moved off the protocol


def test_run_reference_writes_a_run_report_reads(replay_dir, tmp_path, monkeypatch):
  """run_reference.run with the fake server: the project's run layout, resumable."""
  monkeypatch.setattr(run_reference, 'SERVER', FAKE_SERVER)
  data = str(tmp_path / 'replay_logs')   # MinAtar-Breakout's 3 actions
  episodes = [(frames, actions % 3, rewards, terminal) for frames, actions, rewards, terminal
              in helpers.synthetic_episodes(LENGTHS, seed=2)]
  dqn_replay.write_episodes_as_dopamine(episodes, data, capacity=500)
  settings = dict(root_dir=str(tmp_path / 'run'), algo='cql', method=None,
                  game='MinAtar-Breakout', data_source=f'dopamine:{data}', fraction=1.0,
                  subset_mode='uniform', data_seed=0, n_step=3, transitions=None, seed=0,
                  batch_size=8, num_train_steps=20, learning_rate=3e-4, gamma=GAMMA,
                  target_update_period=10, cql_alpha=0.05, bc_beta=0.5, reward_clip=1.0,
                  eval_interval=10, eval_steps=20, eval_max_episodes=2, eval_epsilon=0.001,
                  sticky_action_prob=0.25, max_episode_frames=200, full_action_space=False,
                  progress_steps=5, threads=1)
  f = types.SimpleNamespace(**settings)
  records = run_reference.run(f, sys.executable)
  assert [r['step'] for r in records] == [10, 20]
  from tf_offline_q.eval import evaluation  # pylint: disable=g-import-not-at-top
  info = evaluation.read_run_info(f.root_dir)
  assert (info['method'], info['game'], info['seed']) == ('d3rlpy_cql', 'MinAtar-Breakout', 0)
  assert [r['step'] for r in evaluation.read_eval_records(f.root_dir)] == [10, 20]
  assert run_reference.run(f, sys.executable) == records      # finished: left alone
  with pytest.raises(Exception, match='cql_alpha'):
    run_reference.run(types.SimpleNamespace(**dict(settings, cql_alpha=1.0)), sys.executable)


def test_resume_check_ignores_cql_settings_for_bc(tmp_path):
  """DiscreteBC has no alpha and no target network: a BC run at another alpha
  is the same run (paper_figures reuses it); CQL's own settings still count."""
  path = str(tmp_path / 'reference_config.json')
  settings = {name: 0 for name in run_reference.FIXED}
  for algo in ('bc', 'cql'):
    saved = dict(settings, algo=algo, cql_alpha=0.05, target_update_period=200)
    with open(path, 'w') as f:
      f.write(json.dumps({'settings': saved}))
    changed = dict(saved, cql_alpha=0.5, target_update_period=50)
    if algo == 'bc':
      run_reference._check_resume(path, changed)      # pylint: disable=protected-access
    else:
      with pytest.raises(Exception, match="cql_alpha: saved 0.05, now 0.5"):
        run_reference._check_resume(path, changed)    # pylint: disable=protected-access
    with pytest.raises(Exception, match='batch_size: saved 0, now 64'):
      # pylint: disable-next=protected-access
      run_reference._check_resume(path, dict(saved, batch_size=64))
