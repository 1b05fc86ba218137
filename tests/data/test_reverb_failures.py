"""Lost or absent Reverb servers, damaged table checkpoints, clear messages."""
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import reverb

from tests.data import conftest
from tests.data import helpers
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import reverb_stream


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_absent_server_is_named_within_the_timeout(capfd):
  address = f'localhost:{_free_port()}'
  start = time.monotonic()
  with pytest.raises(reverb_stream.ServerUnavailableError,
                     match=f'No Reverb server answered at {address} within 3s'):
    reverb_stream.make_dataset(address, 'Pong', 4, timeout_seconds=3)
  assert time.monotonic() - start < 15
  assert f'waiting for the Reverb server at {address}' in capfd.readouterr().err


def test_watchdog_says_a_server_is_lost_then_gives_up(capfd):
  table = reverb.Table('t', reverb.selectors.Uniform(), reverb.selectors.Fifo(),
                       10, reverb.rate_limiters.MinSize(1))
  server = reverb.Server([table])
  address = f'localhost:{server.port}'
  lost = []
  watchdog = reverb_stream.ServerWatchdog(
      [address], timeout_seconds=3, poll_seconds=0.5,
      on_lost=lambda a, message: lost.append((a, message))).start()
  try:
    time.sleep(1.2)
    assert not lost
    server.stop()
    deadline = time.monotonic() + 20
    while not lost and time.monotonic() < deadline:
      time.sleep(0.2)
  finally:
    watchdog.stop()
  assert lost and lost[0][0] == address
  assert f'the Reverb server at {address} has not answered' in lost[0][1]
  assert f'the Reverb server at {address} does not answer' in (
      capfd.readouterr().err)


_LEARNER = r'''
import os, sys, time
from tf_offline_q.data import reverb_stream
while not os.path.exists(sys.argv[1]):  # Started with the server, to save time.
  time.sleep(0.2)
address = open(sys.argv[1]).read().strip()
ds = reverb_stream.make_dataset(address, 'Pong', 4, timeout_seconds=6)
for i, _ in enumerate(ds):
  print('batch', i, flush=True)
'''


def test_learner_gives_up_when_its_server_is_killed(tmp_path):
  root = str(tmp_path / 'dqn_replay')
  helpers.write_synthetic_run(dqn_replay.dopamine_replay_dir(root, 'Pong', 1),
                              [9, 14, 3, 20], capacity=100,
                              terminal_last=False)
  address_file = str(tmp_path / 'address')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  learner = subprocess.Popen(
      [sys.executable, '-c', _LEARNER, address_file], cwd=conftest.REPO,
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  server, address = conftest.start_server(
      ['--games=pong', f'--dopamine_root={root}', '--fraction=1.0'],
      address_file)
  try:
    assert learner.stdout.readline().startswith('batch'), learner.stderr.read()
    server.kill()  # kill -9 of the server this test started
    server.wait()
    _, err = learner.communicate(timeout=60)
  finally:
    for proc in (server, learner):
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert learner.returncode == 1
  assert f'error: the Reverb server at {address} has not answered' in err
  assert 'Traceback' not in err


def _filled_server(replay_dir, checkpoint_dir):
  server = reverb_stream.ReplayServer(['Pong'], checkpoint_dir=checkpoint_dir)
  server.fill_from('Pong', reverb_stream.DopamineSource(replay_dir),
                   fraction=1.0)
  path = server.checkpoint()
  items = server.num_items('Pong')
  server.stop()
  return path, items


@pytest.mark.parametrize('sizes_recorded', [True, False])
def test_truncated_table_checkpoint_is_named_and_refilled(tmp_path, capfd,
                                                          sizes_recorded):
  replay_dir = str(tmp_path / 'replay_logs')
  helpers.write_synthetic_run(replay_dir, [9, 14, 3, 20], capacity=100,
                              terminal_last=False)
  checkpoint_dir = str(tmp_path / 'reverb')
  path, items = _filled_server(replay_dir, checkpoint_dir)
  if not sizes_recorded:  # As Reverb alone writes it.
    os.remove(os.path.join(path, reverb_stream.CHECKPOINT_SIZES_FILE))
  chunks = os.path.join(path, 'chunks.tfrecord')
  with open(chunks, 'r+b') as f:
    f.truncate(os.path.getsize(chunks) // 2)
  server = reverb_stream.ReplayServer(['Pong'], checkpoint_dir=checkpoint_dir)
  try:
    assert f'damaged Reverb checkpoint file {chunks}' in capfd.readouterr().err
    assert not server.is_filled('Pong')
    server.fill_from('Pong', reverb_stream.DopamineSource(replay_dir),
                     fraction=1.0)
    server.checkpoint()
  finally:
    server.stop()
  server = reverb_stream.ReplayServer(['Pong'], checkpoint_dir=checkpoint_dir)
  try:
    assert server.is_filled('Pong') and server.num_items('Pong') == items
  finally:
    server.stop()


def test_scripts_print_the_message_alone(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  missing = str(tmp_path / 'nowhere')
  runs = {
      script: subprocess.Popen(  # Both at once, to save time.
          [sys.executable, os.path.join(conftest.REPO, 'launch', script),
           *args], cwd=conftest.REPO, env=env, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True)
      for script, args in (
          ('reverb_server.py', ['--games=pong', f'--dopamine_root={missing}']),
          ('convert_dqn_replay.py', ['--game=pong', f'--replay_dir={missing}',
                                     f'--data_dir={tmp_path / "tfds"}']))}
  for script, proc in runs.items():
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err
    assert 'Traceback' not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f'{script}: error: ') and missing in last, last


def test_an_action_outside_the_set_is_reported_as_it_is():
  from tf_offline_q.train import train_eval  # pylint: disable=g-import-not-at-top
  episode = dqn_replay.Episode(np.zeros((3, 84, 84), np.uint8),
                               np.array([1, -1, 2]), np.zeros(3, np.float32),
                               True)
  with pytest.raises(ValueError, match='holds action -1, outside the 3'):
    list(train_eval._checked_actions([episode], 3, 'dopamine:D'))  # pylint: disable=protected-access
