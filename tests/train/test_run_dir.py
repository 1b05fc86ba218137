"""The run directory's guards without training: lock, settings record, checkpoint recovery,
argument types (issue 10, items 2-5 and 7)."""
import json
import os
import socket
import subprocess
import sys

import gin
import pytest
import tensorflow as tf

from tf_offline_q.train import arguments
from tf_offline_q.train import run_dir
from tf_offline_q.train import train_eval


# ------------------------------------------------------------------ lock
def _dead_pid():
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


def test_a_second_owner_fails_naming_the_directory_and_pid(tmp_path):
  root = str(tmp_path / 'run')
  with run_dir.RunLock(root):
    info = json.load(open(os.path.join(root, 'run.lock')))
    assert info['pid'] == os.getpid() and info['hostname'] == socket.gethostname()
    with pytest.raises(run_dir.RunDirError, match=f'{root} is in use by process {os.getpid()}'):
      run_dir.RunLock(root).acquire()
    # train_eval takes the lock before anything else.
    gin.clear_config()
    with pytest.raises(run_dir.RunDirError, match=f'in use by process {os.getpid()}'):
      train_eval.train_eval(root, game='MinAtar-Breakout', data_source='dopamine:/nonexistent')
    assert sorted(os.listdir(root)) == ['run.lock']
  assert not os.path.exists(os.path.join(root, 'run.lock'))     # released


def test_a_stale_lock_is_taken_over_and_another_hosts_is_not(tmp_path, capsys):
  root = str(tmp_path / 'run')
  os.makedirs(root)
  lock_path = os.path.join(root, 'run.lock')
  with open(lock_path, 'w') as f:
    json.dump({'pid': _dead_pid(), 'hostname': socket.gethostname(), 'started': 'then'}, f)
  with run_dir.RunLock(root):
    assert json.load(open(lock_path))['pid'] == os.getpid()
  assert 'Taking over the stale lock' in capsys.readouterr().out
  with open(lock_path, 'w') as f:
    json.dump({'pid': _dead_pid(), 'hostname': 'elsewhere', 'started': 'then'}, f)
  with pytest.raises(run_dir.RunDirError, match='process .* on elsewhere'):
    run_dir.RunLock(root).acquire()


# --------------------------------------------------------------- settings
FIXED = {'game': 'Pong', 'aggregation': 'none', 'backbone': 'vit_ts',
         'data_source': 'dopamine:/data/a', 'CqlC51Agent.cql_alpha': 0.05}
ADJUSTABLE = {'num_train_steps': 100, 'eval_steps': 50}


def test_settings_are_recorded_and_conflicts_listed(tmp_path, capsys):
  root = str(tmp_path)
  record = lambda: json.load(open(os.path.join(root, 'run_config.json')))
  run_dir.check_and_record_config(root, FIXED, ADJUSTABLE, None, table_restored=False)
  assert record()['fixed'] == FIXED
  changed = dict(FIXED, aggregation='mean', backbone='convnet', data_source='dopamine:/data/b',
                 **{'CqlC51Agent.cql_alpha': 1.0})
  with pytest.raises(run_dir.RunDirError) as error:
    run_dir.check_and_record_config(root, changed, ADJUSTABLE, 100, table_restored=True)
  message = str(error.value)
  for line in ('aggregation: "none" (recorded) vs "mean" (now)',
               'backbone: "vit_ts" (recorded) vs "convnet" (now)',
               'data_source: "dopamine:/data/a" (recorded) vs "dopamine:/data/b" (now)',
               'CqlC51Agent.cql_alpha: 0.05 (recorded) vs 1.0 (now)'):
    assert line in message
  assert 'game' not in message.split('Differing settings:')[1]
  # Budgets may change (logged); an unset data_source uses the restored table.
  lines = run_dir.check_and_record_config(root, dict(FIXED, data_source=None),
                                          dict(ADJUSTABLE, num_train_steps=300), 100, True)
  assert lines == ['Setting changed on resume: num_train_steps 100 -> 300']
  out = capsys.readouterr().out
  assert lines[0] in out and 'using the Reverb table restored from the run' in out
  assert record()['fixed']['data_source'] == 'dopamine:/data/a'
  assert record()['resumes'][-1]['changed'] == {'num_train_steps': [100, 300]}
  # Nothing trained nor loaded yet (a first start that failed): a fresh start.
  run_dir.check_and_record_config(root, changed, ADJUSTABLE, None, table_restored=False)
  assert record()['fixed'] == changed


def test_relative_and_absolute_data_paths_are_the_same_source(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert run_dir.normalize_data_source('dopamine:data/x@0,1') == f'dopamine:{tmp_path}/data/x@0,1'
  assert run_dir.normalize_data_source('tfds:d:name/cfg') == f'tfds:{tmp_path}/d:name/cfg'
  assert run_dir.normalize_data_source(None) is None


def test_operative_config_of_the_first_start_is_kept(tmp_path):
  root = str(tmp_path)
  run_dir.write_operative_config(root, 'first', None)
  run_dir.write_operative_config(root, 'resumed', 200)
  assert open(os.path.join(root, 'operative_config.gin')).read() == 'first'
  assert open(os.path.join(root, 'operative_config.resume-200.gin')).read() == 'resumed'


# ------------------------------------------------------------ checkpoints
def _checkpoints(directory, steps):
  """ckpt-N for N in `steps`, as the Learner's CheckpointManager writes them."""
  value = tf.Variable(tf.zeros([64, 64]))
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), directory,
                                       max_to_keep=2)
  for step in steps:
    value.assign(tf.fill([64, 64], float(step)))
    manager.save(checkpoint_number=step)
  return directory


def _restore(directory):
  value = tf.Variable(tf.zeros([64, 64]))
  tf.train.Checkpoint(value=value).restore(tf.train.latest_checkpoint(directory))
  return float(value[0, 0])


def test_missing_state_file_restores_the_newest_checkpoint(tmp_path, capsys):
  directory = _checkpoints(str(tmp_path / 'checkpoints'), [100, 200])
  os.remove(os.path.join(directory, 'checkpoint'))
  assert run_dir.recover_checkpoints(directory) == 200
  assert 'checkpoint is missing: resuming from the newest checkpoint on disk, ckpt-200' in (
      capsys.readouterr().out)
  assert _restore(directory) == 200.0
  assert run_dir.recover_checkpoints(str(tmp_path / 'none')) is None


@pytest.mark.parametrize('damage', ['delete_data', 'truncate_data', 'truncate_index'])
def test_damaged_checkpoint_is_named_and_the_previous_one_restored(tmp_path, capsys, damage):
  directory = _checkpoints(str(tmp_path / 'checkpoints'), [100, 200])
  data = os.path.join(directory, 'ckpt-200.data-00000-of-00001')
  index = os.path.join(directory, 'ckpt-200.index')
  if damage == 'delete_data':
    os.remove(data)
  else:
    path = data if damage == 'truncate_data' else index
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
  assert run_dir.recover_checkpoints(directory) == 100
  out = capsys.readouterr().out
  named = {'delete_data': f'{data} is missing', 'truncate_data': f'{data} is truncated',
           'truncate_index': f'{index} is unreadable'}[damage]
  assert f'Checkpoint ckpt-200 in {directory} is damaged: {named}' in out
  assert 'Falling back to ckpt-100' in out
  assert _restore(directory) == 100.0
  assert not [n for n in os.listdir(directory) if n.startswith('ckpt-200')]
  assert os.listdir(os.path.join(str(tmp_path), 'damaged_checkpoints'))


def test_no_intact_checkpoint_fails_instead_of_restarting(tmp_path):
  directory = _checkpoints(str(tmp_path / 'checkpoints'), [100, 200])
  for step in (100, 200):
    os.remove(os.path.join(directory, f'ckpt-{step}.data-00000-of-00001'))
  with pytest.raises(run_dir.RunDirError, match='No intact checkpoint in .*checkpoints'):
    run_dir.recover_checkpoints(directory)


# ---------------------------------------------------------------- types
@pytest.mark.parametrize('binding, message', [
    ("train_eval.full_action_space = 'False'",
     "train_eval.full_action_space must be a bool (True or False), got 'False'"),
    ('train_eval.num_train_steps = 120.5', 'train_eval.num_train_steps must be an int, got 120.5'),
    ("train_eval.batch_size = 'abc'", "train_eval.batch_size must be an int, got 'abc'"),
    ('train_eval.seed = True', 'train_eval.seed must be an int, got True'),
    ('train_eval.fraction = "0.5"', "train_eval.fraction must be a number, got '0.5'"),
    ("train_eval.reverb_addresses = 'localhost:1'",
     "train_eval.reverb_addresses must be a list of strings, got 'localhost:1'"),
])
def test_gin_values_of_the_wrong_type_name_the_binding(tmp_path, binding, message):
  gin.clear_config()
  gin.parse_config([binding])
  try:
    with pytest.raises(arguments.ConfigError) as error:
      train_eval.train_eval(str(tmp_path / 'run'))
  finally:
    gin.clear_config()
  assert str(error.value).splitlines()[0] == message   # gin adds "In call to configurable"
  assert not os.path.exists(tmp_path / 'run')       # nothing written


def test_values_of_the_right_type_pass():
  def f(a: int, b: float, c: bool, d=None):
    del a, b, c, d
  arguments.check_types(f, {'a': 3, 'b': 2, 'c': False, 'd': 'anything'}, 'f')
  with pytest.raises(arguments.ConfigError, match='f.a must be an int, got 3.0'):
    arguments.check_types(f, {'a': 3.0}, 'f')
