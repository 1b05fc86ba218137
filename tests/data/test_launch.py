"""The launch scripts as separate processes: server, restart, generator."""
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import fixed_policy
from tf_agents.policies import policy_saver

from tests.data import conftest
from tests.data import helpers
from tf_offline_q import specs
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import reverb_stream


def test_server_process_and_restart_from_checkpoint(tmp_path):
  root = str(tmp_path / 'dqn_replay')
  replay_dir = dqn_replay.dopamine_replay_dir(root, 'Pong', 1)
  helpers.write_synthetic_run(replay_dir, [9, 14, 3, 20, 8, 11],
                              capacity=400, terminal_last=False)
  ckpt = str(tmp_path / 'ckpt')
  address_file = str(tmp_path / 'address')
  args = ['--games=pong', f'--dopamine_root={root}', '--fraction=1.0',
          f'--checkpoint_dir={ckpt}', '--n_step=3']
  proc, address = conftest.start_server(args, address_file)
  try:
    ds = reverb_stream.make_dataset(address, 'Pong', batch_size=8)
    traj = next(iter(ds))
    assert traj.observation.shape == (8, 4, 84, 84, 4)
    items = reverb_stream.resolve_sources(address, 'Pong')[0][2]
    assert items > 0
  finally:
    out = conftest.stop_process(proc)
  assert 'Checkpoint' in out, out
  shutil.rmtree(root)  # the restarted server must not need the files
  proc, address = conftest.start_server(args, address_file)
  try:
    assert reverb_stream.resolve_sources(address, 'Pong')[0][2] == items
    traj = next(iter(reverb_stream.make_dataset(address, 'Pong', 4)))
    assert traj.observation.shape == (4, 4, 84, 84, 4)
  finally:
    out = conftest.stop_process(proc)
  assert 'restored' in out, out


def test_generator_with_a_saved_epsilon_greedy_policy(tmp_path):
  """epsilon=0 over a saved policy that always plays 3: every action is 3."""
  policy = fixed_policy.FixedPolicy(
      np.int64(3), specs.time_step_spec(), specs.action_spec(18))
  policy_dir = str(tmp_path / 'policy')
  policy_saver.PolicySaver(policy).save(policy_dir)
  root = str(tmp_path / 'out')
  out = conftest.run_script(
      'generate_dqn_replay.py', f'--root_dir={root}', '--game=Pong',
      '--num_steps=120', '--checkpoint_every=50', '--replay_capacity=100',
      '--policy=mixture', '--mixture_random_prob=0.0', '--epsilon=0.0',
      f'--policy_dir={policy_dir}')
  assert 'checkpoints [0, 1, 2]' in out
  replay_dir = dqn_replay.dopamine_replay_dir(root, 'Pong', 1)
  episodes = list(dqn_replay.iterate_episodes(replay_dir, checkpoints=[2]))
  actions = np.concatenate([e.action for e in episodes])
  # 123 adds (3 padding + 120 steps, no game over) wrapped a buffer of 100.
  assert len(actions) == 100
  assert (actions == 3).all()
  with pytest.raises(AssertionError, match='Unknown Atari game'):
    conftest.run_script('generate_dqn_replay.py', f'--root_dir={root}',
                        '--game=NotAGame', '--num_steps=10')
  # Generating again into the same directory is refused, in one line.
  with pytest.raises(AssertionError) as refused:
    conftest.run_script('generate_dqn_replay.py', f'--root_dir={root}',
                        '--game=Pong', '--num_steps=50', '--seed=2')
  assert (f'generate_dqn_replay.py: error: {replay_dir} already holds a '
          'dataset (run ') in str(refused.value)
  assert '--overwrite' in str(refused.value)
  assert 'Traceback' not in str(refused.value)
  assert dqn_replay.list_checkpoints(replay_dir) == [0, 1, 2]
