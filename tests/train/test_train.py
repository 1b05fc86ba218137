"""launch/train.py end to end: XLA + evaluation, kill -9 and resume, multi-worker."""
import glob
import json
import os
import re
import subprocess
import time

import gin
import numpy as np
import portpicker
import pytest
import tensorflow as tf

from tests.train import conftest
from tf_offline_q.eval import evaluation
from tf_offline_q.train import export
from tf_offline_q.train import train_eval


def _event_scalars(directory):
  """{tag: {step: value}} from the TensorBoard event files under `directory`."""
  out = {}
  for path in glob.glob(os.path.join(directory, '**', 'events.out.tfevents.*'), recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
  return out


def test_xla_train_step_evaluation_and_summaries(pong_replay, tmp_path):
  gin.clear_config()
  root = str(tmp_path / 'run')
  gin.parse_config([
      "train_eval.variant = 'micro'", 'train_eval.batch_size = 8',
      'train_eval.num_train_steps = 20', 'train_eval.steps_per_run = 10',
      'train_eval.eval_interval = 20', 'train_eval.eval_steps = 50',
      'train_eval.max_episode_frames = 400', 'train_eval.policy_save_interval = 20',
      'train_eval.jit_compile = True', 'train_eval.fraction = 1.0',
      f"train_eval.data_source = 'dopamine:{pong_replay}'"])
  records = train_eval.train_eval(root)
  gin.clear_config()
  assert [r['step'] for r in records] == [20]
  assert evaluation.read_eval_records(root)[0]['game'] == 'Pong'
  assert records[0]['lengths'] and max(records[0]['lengths']) <= 100  # 400 frames / skip 4
  train = _event_scalars(os.path.join(root, 'train'))
  for tag in ('Losses/loss', 'Losses/td_loss', 'Losses/cql_loss', 'Losses/q_data',
              'Losses/logsumexp_q', 'Losses/q_mean', 'Losses/gradient_norm',
              'Metrics/steps_per_sec'):
    assert set(train[tag]) == {10, 20}, tag
  evals = _event_scalars(os.path.join(root, 'eval'))
  assert 'Eval/AverageReturn/Pong' in evals and 'Eval/DQNNormalizedScore/Pong' in evals
  assert any(tag.startswith('Eval/IQM') for tag in evals)
  assert os.path.isdir(os.path.join(root, 'policies', 'greedy_policy'))
  assert json.load(open(os.path.join(root, 'run.json')))['method'] == 'cql_vit_ts_none'


def test_kill_9_then_the_same_command_resumes(pong_replay, tmp_path):
  root = str(tmp_path / 'run')
  command = conftest.train_command(root, pong_replay, 'train_eval.num_train_steps=400',
                                   'train_eval.checkpoint_interval=100',
                                   'train_eval.policy_save_interval=100')
  first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=conftest.env(), text=True)
  # While the first process runs, the same command fails at once naming it.
  lock = os.path.join(root, 'run.lock')
  deadline = time.time() + 600
  while not os.path.exists(lock) and first.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  other = subprocess.run(command, capture_output=True, text=True, env=conftest.env(),
                         timeout=300)
  assert other.returncode == 1 and first.poll() is None, other.stderr[-3000:]
  assert f'train.py: error: Run directory {root} is in use by process {first.pid}' in other.stderr

  ckpt = os.path.join(root, 'train', 'checkpoints', 'ckpt-200.index')
  while not os.path.exists(ckpt) and first.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  first.kill()  # SIGKILL
  output = first.communicate()[0]
  assert first.returncode == -9, output[-3000:]
  done = int(re.findall(r'step (\d+)/400', output)[-1])
  assert 200 <= done < 400, output[-3000:]
  greedy = os.path.join(root, 'policies', 'greedy_policy')
  assert 100 <= export.exported_step(greedy) < 400

  second = subprocess.run(command, capture_output=True, text=True, env=conftest.env(),
                          timeout=900)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f'Taking over the stale lock {lock} of process {first.pid}' in second.stdout
  assert not os.path.exists(lock)
  # The exported policy is the resumed run's final one, not the first process's.
  assert export.exported_step(greedy) == 400
  assert evaluation.load_saved_policy(greedy).get_train_step() == 400
  assert export.exported_step(os.path.join(root, 'policies', 'collect_policy')) == 400
  resumed = int(re.search(r'Resumed from checkpoint at step (\d+)', second.stdout).group(1))
  assert 200 <= resumed <= done and resumed % 100 == 0
  first_line = re.search(r'step (\d+)/400', second.stdout)
  assert int(first_line.group(1)) == resumed + 20
  reader = tf.train.load_checkpoint(os.path.join(root, 'train', 'checkpoints', 'ckpt-400'))
  names = reader.get_variable_to_shape_map()
  assert int(reader.get_tensor(next(n for n in names if n.startswith('train_step')))) == 400
  # Adam's step count (and so its moment estimates) came back from the checkpoint.
  assert int(reader.get_tensor('agent/_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE')) == 400
  losses = _event_scalars(os.path.join(root, 'train'))['Losses/loss']
  assert {100, 200, 400} <= set(losses) and min(losses) == 20


def test_multi_worker_mirrored_two_workers_end_with_identical_weights(pong_replay, tmp_path):
  root = str(tmp_path / 'run')
  ports = [portpicker.pick_unused_port() for _ in range(2)]
  cluster = {'worker': [f'localhost:{p}' for p in ports]}
  procs = []
  for index in range(2):
    env = conftest.env()
    env['TF_CONFIG'] = json.dumps({'cluster': cluster, 'task': {'type': 'worker',
                                                                 'index': index}})
    procs.append(subprocess.Popen(
        conftest.train_command(root, pong_replay, 'train_eval.num_train_steps=40'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True))
  outputs = [p.communicate(timeout=900)[0] for p in procs]
  for proc, out in zip(procs, outputs):
    assert proc.returncode == 0, out[-3000:]
    assert 'MultiWorkerMirroredStrategy with 2 replica(s)' in out
  chief = tf.train.load_checkpoint(os.path.join(root, 'train', 'checkpoints', 'ckpt-40'))
  other = tf.train.load_checkpoint(os.path.join(root, 'worker_1', 'train', 'checkpoints',
                                                'ckpt-40'))
  names = [n for n in chief.get_variable_to_shape_map() if 'q_network' in n.lower()]
  assert len(names) > 10
  for name in names:
    np.testing.assert_array_equal(chief.get_tensor(name), other.get_tensor(name), err_msg=name)
  assert any('Losses' in line or 'loss=' in line for line in outputs[0].splitlines())
