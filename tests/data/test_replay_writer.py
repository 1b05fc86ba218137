"""Dataset directories are written by one run and never silently mixed."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.data import conftest
from tests.data import helpers
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import replay_writer

Writer = replay_writer.ReplayDirWriter


def _buffer_with(episodes, capacity=60):
  buffer = dqn_replay.DopamineReplayWriter(capacity)
  for frames, actions, rewards, terminal in episodes:
    for t in range(len(frames)):
      buffer.add(frames[t], actions[t], rewards[t],
                 terminal and t == len(frames) - 1)
  return buffer


def _steps(replay_dir):
  return sum(len(e) for e in dqn_replay.iterate_episodes(replay_dir,
                                                         fraction=1.0))


def test_checkpoints_append_and_resume_the_same_run(tmp_path, caplog):
  replay_dir = str(tmp_path / 'replay_logs')
  episodes = helpers.synthetic_episodes([5, 7, 4, 9, 6], seed=1)
  with Writer.create(replay_dir, metadata={'game': 'Pong'}) as out:
    run_id = out.run_id
    buffer = _buffer_with(episodes[:2])
    out.write_checkpoint(0, buffer)
    assert out.checkpoints == [0]
  assert dqn_replay.list_checkpoints(replay_dir) == [0]
  assert 'has not finished' in caplog.text
  assert replay_writer.describe_dataset(replay_dir).endswith('unfinished')
  # A restart: the same run goes on from the buffer as checkpoint 0 saved it.
  with Writer.resume(replay_dir, run_id=run_id) as out:
    assert out.metadata == {'game': 'Pong'}
    restored = out.restore_buffer()
    assert restored.add_count == buffer.add_count
    for name, array in buffer.checkpoint_arrays().items():
      np.testing.assert_array_equal(restored.checkpoint_arrays()[name], array)
    for frames, actions, rewards, terminal in episodes[2:]:
      for t in range(len(frames)):
        restored.add(frames[t], actions[t], rewards[t],
                     terminal and t == len(frames) - 1)
    out.write_checkpoint(1, restored)
    with pytest.raises(dqn_replay.DataError, match='already written'):
      out.write_checkpoint(1, restored)
    out.write_checkpoint(1, restored, replace=True)
    out.finish()
  caplog.clear()
  assert dqn_replay.list_checkpoints(replay_dir) == [0, 1]
  assert 'has not finished' not in caplog.text
  last = list(dqn_replay.iterate_episodes(replay_dir, checkpoints=[1]))
  assert sum(len(e) for e in last) == sum(len(e[0]) for e in episodes)
  with pytest.raises(dqn_replay.DataError, match='not run abc'):
    Writer.resume(replay_dir, run_id='abc')


def test_an_existing_dataset_is_refused_or_replaced_wholesale(tmp_path):
  replay_dir = str(tmp_path / 'replay_logs')
  first = helpers.synthetic_episodes([6, 8, 5], seed=1)
  with Writer.create(replay_dir) as out:
    out.write_checkpoint(0, _buffer_with(first[:2]))
    out.write_checkpoint(1, _buffer_with(first))
  with pytest.raises(dqn_replay.DataError,
                     match=r'already holds a dataset .*checkpoints \[0, 1\].*'
                     'overwrite'):
    Writer.create(replay_dir)
  second = helpers.synthetic_episodes([4, 3], seed=2)
  with Writer.create(replay_dir, overwrite=True) as out:
    out.write_checkpoint(0, _buffer_with(second))
  # Only the new run: its one checkpoint, nothing of the old checkpoint 1.
  assert dqn_replay.list_checkpoints(replay_dir) == [0]
  assert _steps(replay_dir) == 7
  assert sorted(os.listdir(tmp_path)) == ['replay_logs']
  # Even one whose manifest does not read.
  with open(dqn_replay.manifest_path(replay_dir), 'w') as f:
    f.write('{"format": ')
  with pytest.raises(dqn_replay.DataError, match='unreadable dataset manifest'):
    dqn_replay.list_checkpoints(replay_dir)
  Writer.create(replay_dir, overwrite=True).close()
  assert os.listdir(replay_dir) == [dqn_replay.MANIFEST_NAME]
  # A plain Dopamine directory (no manifest) is a dataset too.
  plain = str(tmp_path / 'plain')
  helpers.write_synthetic_run(plain, [5, 6], capacity=40)
  with pytest.raises(dqn_replay.DataError, match='without a manifest'):
    Writer.create(plain)


def test_files_of_another_run_are_refused_naming_the_file(tmp_path):
  """The issue's kill: a new observation file beside the old run's others."""
  old_dir, new_dir = str(tmp_path / 'old'), str(tmp_path / 'new')
  for path, seed in ((old_dir, 1), (new_dir, 2)):
    with Writer.create(path) as out:
      out.write_checkpoint(
          0, _buffer_with(helpers.synthetic_episodes([6, 8, 5], seed=seed)))
  name = '$store$_observation_ckpt.0.gz'
  shutil.copy(os.path.join(new_dir, name), os.path.join(old_dir, name))
  with pytest.raises(dqn_replay.DataError, match=r'observation_ckpt\.0\.gz is '
                     'not the file run'):
    list(dqn_replay.iterate_episodes(old_dir, fraction=1.0))
  with pytest.raises(dqn_replay.DataError, match='damaged'):
    Writer.resume(old_dir)
  # Files of a checkpoint the manifest does not list are never read.
  for fname in os.listdir(new_dir):
    if fname.endswith('_ckpt.0.gz'):
      shutil.copy(os.path.join(new_dir, fname),
                  os.path.join(new_dir, fname.replace('.0.gz', '.1.gz')))
  assert dqn_replay.list_checkpoints(new_dir) == [0]
  with pytest.raises(dqn_replay.DataError, match='not in its manifest'):
    dqn_replay.read_checkpoint_info(new_dir, 1)
  # resume() deletes them, and temporaries a SIGKILL left.
  open(os.path.join(new_dir, f'.{name}.abc123.tmp'), 'wb').close()
  Writer.resume(new_dir).close()
  assert not [f for f in os.listdir(new_dir)
              if '.1.gz' in f or f.endswith('.tmp')]


def test_plain_dopamine_directories_still_read(tmp_path):
  replay_dir = str(tmp_path / 'replay_logs')
  helpers.write_synthetic_run(replay_dir, [5, 6, 7], capacity=40)
  assert not os.path.exists(dqn_replay.manifest_path(replay_dir))
  assert _steps(replay_dir) == 18
  with Writer.create(str(tmp_path / 'other')) as out:
    with pytest.raises(dqn_replay.DataError, match='ReplayDirWriter'):
      _buffer_with(helpers.synthetic_episodes([4])).save(out.replay_dir, 0)


def test_one_writer_at_a_time(tmp_path):
  replay_dir = str(tmp_path / 'replay_logs')
  with Writer.create(replay_dir) as out:
    out.write_checkpoint(0, _buffer_with(helpers.synthetic_episodes([5])))
    with pytest.raises(dqn_replay.DataError, match='Another process'):
      Writer.resume(replay_dir)
  Writer.resume(replay_dir).close()


_SLOW_SAVE = r'''
import os, sys, time, types, numpy as np
# The package without its __init__ (which imports TensorFlow): a fast start.
package = types.ModuleType('tf_offline_q.data')
package.__path__ = [os.path.join('tf_offline_q', 'data')]
sys.modules['tf_offline_q.data'] = package
from tf_offline_q.data import dqn_replay, replay_writer
real_save = np.save
def slow_save(f, array, **kw):
  open(sys.argv[2], 'w').close()  # "the save has started"
  time.sleep(60)
np.save = slow_save
out = replay_writer.ReplayDirWriter.create(sys.argv[1])
buffer = dqn_replay.DopamineReplayWriter(20, frame_shape=(4, 4))
buffer.add(np.ones((4, 4), np.uint8), 1, 1.0, True)
out.write_checkpoint(0, buffer)
'''


def test_a_writer_terminated_mid_save_leaves_no_temporary(tmp_path):
  replay_dir = str(tmp_path / 'replay_logs')
  started = str(tmp_path / 'started')
  proc = subprocess.Popen([sys.executable, '-c', _SLOW_SAVE, replay_dir,
                           started], cwd=conftest.REPO)
  deadline = time.time() + 60
  while not os.path.exists(started):
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.1)
  assert [f for f in os.listdir(replay_dir) if f.endswith('.tmp')]
  proc.send_signal(signal.SIGTERM)  # the process this test started
  assert proc.wait(timeout=30) != 0
  assert os.listdir(replay_dir) == [dqn_replay.MANIFEST_NAME]
