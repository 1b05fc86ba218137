"""Fixtures of tests/data: Dopamine files made here, never downloaded."""
import os
import subprocess
import sys
import time

import pytest

from tests.data import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def run_script(script, *args, timeout=240):
  """Runs `python launch/<script> args` from the repo root; returns stdout."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch', script), *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
  if proc.returncode:
    raise AssertionError(f'{script} failed ({proc.returncode}):\n'
                         f'{proc.stdout}\n{proc.stderr[-4000:]}')
  return proc.stdout


def start_server(args, address_file):
  """Starts `launch/reverb_server.py args`; returns (process, its address)."""
  if os.path.exists(address_file):
    os.remove(address_file)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'launch', 'reverb_server.py'),
       *args, f'--address_file={address_file}'],
      cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 180
  while not os.path.exists(address_file):
    if proc.poll() is not None or time.time() > deadline:
      proc.kill()
      raise AssertionError(f'server did not start:\n{proc.stdout.read()}')
    time.sleep(0.5)
  return proc, open(address_file).read().strip()


def stop_process(proc):
  """Terminates a process a test started (by its pid); returns its output."""
  proc.terminate()  # only the process this test started, by its pid
  try:
    out, _ = proc.communicate(timeout=30)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, _ = proc.communicate()
  return out


@pytest.fixture(scope='session')
def ale_root(tmp_path_factory):
  """Real Breakout play (random policy) as Dopamine files, 3 checkpoints.

  Capacity 800 < steps, so the circular buffer wraps as in the published
  data (episodes cut at the cursor, padding, invalid_range).
  """
  root = str(tmp_path_factory.mktemp('dqn_replay'))
  run_script('generate_dqn_replay.py', f'--root_dir={root}', '--game=breakout',
             '--num_steps=2000', '--checkpoint_every=800',
             '--replay_capacity=800', '--seed=1')
  return root


@pytest.fixture(scope='session')
def ale_replay_dir(ale_root):
  return os.path.join(ale_root, 'Breakout', '1', 'replay_logs')


@pytest.fixture()
def synthetic_run(tmp_path):
  """Coded-frame episodes written as one wrapped Dopamine checkpoint."""
  replay_dir = str(tmp_path / 'replay_logs')
  lengths = [7, 1, 2, 30, 3, 12, 25, 4, 40, 9, 1, 18, 5, 22, 33, 6, 14]
  episodes, suffixes = helpers.write_synthetic_run(
      replay_dir, lengths, capacity=160, terminal_last=False, seed=3)
  return replay_dir, episodes, suffixes
