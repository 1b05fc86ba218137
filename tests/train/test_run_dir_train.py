"""A trained run directory: its exported policy is the trained one (issue 9), and a resume
with other settings, a lost state file or a damaged checkpoint does the right thing (issue 10)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tests.train import conftest
from tf_offline_q.data import dqn_replay
from tf_offline_q.envs import games
from tf_offline_q.train import export
from tf_offline_q.train import run_dir
from tf_offline_q.train import train_eval

STEPS = 20
# A micro CQL run on MinAtar Breakout, checkpointed and exported every 10 steps.
SETTINGS = dict(game='MinAtar-Breakout', agent_type='cql', backbone='vit', variant='micro',
                batch_size=8, num_train_steps=STEPS, steps_per_run=10, eval_interval=0,
                checkpoint_interval=10, policy_save_interval=10, summary_interval=10,
                fraction=1.0)

LOAD_AND_ACT = '''
import sys
import numpy as np
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts
policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(sys.argv[1], load_specs_from_pbtxt=True)
observations = np.load(sys.argv[2])
actions = [int(policy.action(ts.restart(o)).action) for o in observations]
print('RESULT', int(policy.get_train_step()), *actions)
'''


@pytest.fixture(scope='module')
def trained_run(minatar_replay, tmp_path_factory):
  """A run directory after STEPS steps (trained once; tests work on copies)."""
  root = str(tmp_path_factory.mktemp('trained') / 'run')
  train_eval.train_eval(root, data_source=f'dopamine:{minatar_replay}', **SETTINGS)
  return root


def _copy(root, tmp_path):
  copy = str(tmp_path / 'run')
  shutil.copytree(root, copy)
  return copy


def _observations(replay_dir, count=8):
  """`count` stacked observations [84, 84, 4] of recorded frames."""
  frames = np.concatenate([e.observation for e in dqn_replay.iterate_episodes(replay_dir)])
  return np.stack([np.moveaxis(frames[10 * i:10 * i + 4], 0, -1) for i in range(count)])


def _agent_at(checkpoint):
  """The agent of SETTINGS restored from a Learner checkpoint, in memory."""
  env = games.make_env('MinAtar-Breakout', full_action_space=False)
  agent = train_eval.make_agent('cql', tensor_spec.from_spec(env.time_step_spec()),
                                tensor_spec.from_spec(env.action_spec()), 'vit', 'micro',
                                'none', False, 3)
  step = tf.Variable(0, dtype=tf.int64)
  tf.train.Checkpoint(agent=agent, train_step=step).restore(checkpoint).expect_partial()
  return agent, int(step.numpy())


def test_exported_policy_is_the_trained_one(trained_run, minatar_replay, tmp_path):
  policies = os.path.join(trained_run, 'policies')
  assert sorted(os.listdir(policies)) == ['collect_policy', 'greedy_policy']  # no checkpoints/
  for name in ('greedy_policy', 'collect_policy'):
    assert json.load(open(os.path.join(policies, name, export.INFO_FILE)))['train_step'] == STEPS
  observations = _observations(minatar_replay)
  np.save(tmp_path / 'obs.npy', observations)
  out = subprocess.run([sys.executable, '-c', LOAD_AND_ACT, os.path.join(policies, 'greedy_policy'),
                        str(tmp_path / 'obs.npy')], capture_output=True, text=True,
                       env=conftest.env(), timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  result = [int(v) for v in out.stdout.split('RESULT')[1].split()]
  agent, step = _agent_at(os.path.join(trained_run, 'train', 'checkpoints', f'ckpt-{STEPS}'))
  assert result[0] == step == STEPS
  expected = [int(agent.policy.action(ts.restart(tf.constant(o[None]), batch_size=1)).action[0])
              for o in observations]
  assert result[1:] == expected
  # The untrained network acts otherwise on these frames (so the check can fail).
  untrained, _ = _agent_at(None)
  q = lambda a: a._q_network(tf.constant(observations))[0].numpy()
  assert not np.allclose(q(untrained), q(agent))


def test_resuming_with_other_settings_fails_listing_them(trained_run, minatar_replay, tmp_path):
  root = _copy(trained_run, tmp_path)
  before = open(os.path.join(root, 'train', 'checkpoints', f'ckpt-{STEPS}.index'), 'rb').read()
  with pytest.raises(run_dir.RunDirError) as error:
    train_eval.train_eval(root, **dict(SETTINGS, aggregation='mean', num_train_steps=40,
                                       data_source=f'dopamine:{minatar_replay}'))
  assert 'aggregation: "none" (recorded) vs "mean" (now)' in str(error.value)
  with pytest.raises(run_dir.RunDirError) as error:
    train_eval.train_eval(root, **dict(SETTINGS, backbone='vit_ts', num_train_steps=40,
                                       data_source='dopamine:/elsewhere'))
  message = str(error.value)
  assert 'backbone: "vit" (recorded) vs "vit_ts" (now)' in message
  assert f'data_source: "dopamine:{minatar_replay}" (recorded) vs "dopamine:/elsewhere"' in message
  assert 'aggregation' not in message
  after = open(os.path.join(root, 'train', 'checkpoints', f'ckpt-{STEPS}.index'), 'rb').read()
  assert before == after and not os.path.exists(os.path.join(root, 'run.lock'))


def test_lost_state_file_and_damaged_checkpoint_resume_from_the_intact_one(
    trained_run, tmp_path, capsys):
  root = _copy(trained_run, tmp_path)
  checkpoints = os.path.join(root, 'train', 'checkpoints')
  os.remove(os.path.join(checkpoints, 'checkpoint'))
  data = os.path.join(checkpoints, f'ckpt-{STEPS}.data-00000-of-00001')
  with open(data, 'r+b') as f:
    f.truncate(os.path.getsize(data) // 3)
  first_config = open(os.path.join(root, 'operative_config.gin')).read()
  capsys.readouterr()
  # No data_source: the Reverb table is restored from the run's checkpoint.
  train_eval.train_eval(root, **dict(SETTINGS, num_train_steps=STEPS + 10))
  out = capsys.readouterr().out
  assert f'Checkpoint ckpt-{STEPS} in {checkpoints} is damaged: {data} is truncated' in out
  assert 'Resumed from checkpoint at step 10' in out
  assert f'Setting changed on resume: num_train_steps {STEPS} -> {STEPS + 10}' in out
  # The export of step 20 was not of the restored run: replaced at once, then by step 30.
  assert f'held step {STEPS}, not a policy of the restored step 10' in out
  greedy = os.path.join(root, 'policies', 'greedy_policy')
  assert export.exported_step(greedy) == STEPS + 10
  assert tf.saved_model.load(greedy).get_train_step().numpy() == STEPS + 10
  assert open(os.path.join(root, 'operative_config.gin')).read() == first_config
  assert os.path.exists(os.path.join(root, 'operative_config.resume-10.gin'))
  reader = tf.train.load_checkpoint(os.path.join(checkpoints, f'ckpt-{STEPS + 10}'))
  assert int(reader.get_tensor('train_step/.ATTRIBUTES/VARIABLE_VALUE')) == STEPS + 10
