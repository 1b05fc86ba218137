"""Continuous control through launch/train.py: DT / sequence BC on a tiny Minari dataset."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.train.conftest import REPO, env
from tf_offline_q.data import minari_data
from tf_offline_q.train import continuous
from tf_offline_q.train import train_eval  # pylint: disable=unused-import  (registers gin)

ENV_NAME = 'PointMaze_UMaze-v3'
DATASET_ID = 'test/umaze-tiny-v0'


def random_episodes(num_episodes=6, length=25, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(num_episodes):
    n = length + i
    trunc = np.zeros(n, bool)
    trunc[-1] = True
    out.append(minari_data.ContinuousEpisode(
        observations=rng.normal(size=(n + 1, 6)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        rewards=(rng.uniform(size=n) < 0.2).astype(np.float32),
        terminations=np.zeros(n, bool), truncations=trunc))
  return out


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('minari'))
  minari_data.write_minari_dataset(root, DATASET_ID, random_episodes(), ENV_NAME,
                                   ref_min_score=0.0, ref_max_score=100.0)
  return root


def test_load_dataset_errors_name_the_source(tmp_path):
  with pytest.raises(ValueError, match='data_source is not set'):
    continuous.load_dataset(None)
  with pytest.raises(ValueError, match='not a continuous-control dataset'):
    continuous.load_dataset('dopamine:/x')
  with pytest.raises(FileNotFoundError, match='nothing/here-v0'):
    continuous.load_dataset(f'minari:{tmp_path}:nothing/here-v0')


def test_dataset_of_another_environment_is_refused(data_root):
  with pytest.raises(ValueError, match=DATASET_ID):
    continuous.load_dataset(f'minari:{data_root}:{DATASET_ID}', 'Hopper-v5')


def test_observation_stats_and_records(data_root):
  episodes, metadata = continuous.load_dataset(f'minari:{data_root}:{DATASET_ID}', ENV_NAME)
  mean, std = continuous.observation_stats(episodes)
  states = np.concatenate([e.observations[:-1] for e in episodes])
  np.testing.assert_allclose(mean, states.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(std, states.std(0), rtol=1e-4)
  from tf_offline_q.eval import evaluation  # pylint: disable=g-import-not-at-top
  record = continuous.make_continuous_eval_record(
      metadata, 10, evaluation.EvalResult([20.0, 40.0], [300, 300], 600))
  assert record['game'] == DATASET_ID
  assert record['normalized'] == pytest.approx(0.3)
  assert record['d4rl_normalized'] == pytest.approx(30.0)


def _command(root_dir, data_root, *bindings, gin_files=('dt_maze.gin',)):
  return [sys.executable, os.path.join(REPO, 'launch', 'train.py'), f'--root_dir={root_dir}',
             *(f'--gin_file={g}' for g in gin_files), '--gin_file=continuous_local.gin',
             f"--gin_bindings=train_eval.data_source='minari:{data_root}:{DATASET_ID}'",
             '--gin_bindings=train_eval.batch_size=8',
             '--gin_bindings=train_eval.steps_per_run=10',
             '--gin_bindings=train_eval.eval_max_episodes=1',
             '--gin_bindings=train_eval.checkpoint_interval=10',
             '--gin_bindings=DecisionTransformerNetwork.width=16',
             '--gin_bindings=DecisionTransformerNetwork.depth=1',
             '--gin_bindings=DecisionTransformerNetwork.context_length=5',
             *(f'--gin_bindings={b}' for b in bindings)]


def _train(root_dir, data_root, *bindings, gin_files=('dt_maze.gin',)):
  command = _command(root_dir, data_root, *bindings, gin_files=gin_files)
  proc = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True,
                        timeout=400)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def test_dt_trains_evaluates_and_exports(tmp_path, data_root):
  run_dir = str(tmp_path / 'dt')
  out = _train(run_dir, data_root, 'train_eval.num_train_steps=20',
               'train_eval.eval_interval=20', 'train_eval.policy_save_interval=20')
  assert 'step 20/20' in out and 'D4RL-normalised' in out
  records = [json.loads(l) for l in open(os.path.join(run_dir, 'eval', 'returns.jsonl'))]
  assert [r['step'] for r in records] == [20]
  assert records[0]['game'] == DATASET_ID and len(records[0]['returns']) == 1
  assert records[0]['d4rl_normalized'] == pytest.approx(records[0]['mean_return'])  # 0..100
  info = json.load(open(os.path.join(run_dir, 'run.json')))
  assert info['game'] == DATASET_ID and info['method'] == 'dt'
  # The exported policy (loading one in a fresh process is tested in
  # tests/agents/test_decision_transformer.py).
  for name in ('greedy_policy', 'collect_policy'):
    for f in ('saved_model.pb', 'policy_specs.pbtxt'):
      assert os.path.exists(os.path.join(run_dir, 'policies', name, f))


def test_sequence_bc_trains_and_resumes(tmp_path, data_root):
  run_dir = str(tmp_path / 'bc')
  bc = ('dt_maze.gin', 'dt_sequence_bc.gin')
  _train(run_dir, data_root, 'train_eval.num_train_steps=10', 'train_eval.eval_interval=0',
         'train_eval.policy_save_interval=0', gin_files=bc)
  info = json.load(open(os.path.join(run_dir, 'run.json')))
  assert info['method'] == 'sequence_bc' and info['agent_type'] == 'sequence_bc'
  out = _train(run_dir, data_root, 'train_eval.num_train_steps=20', 'train_eval.eval_interval=0',
               'train_eval.policy_save_interval=0', gin_files=bc)
  assert 'Resumed from checkpoint at step 10' in out and 'step 20/20' in out
  assert 'restored from its checkpoint' in out      # the Reverb windows were not reloaded
  # The network's sizes are recorded as fixed settings (a resume may not change them).
  config = json.load(open(os.path.join(run_dir, 'run_config.json')))
  assert config['fixed']['DecisionTransformerNetwork.width'] == 16
  assert config['fixed']['DecisionTransformerAgent.learning_rate'] == 3e-4

@pytest.mark.parametrize('files,agent_type,scale', [
    (('dt_gym.gin',), 'dt', 1000.0), (('dt_maze.gin',), 'dt', 100.0),
    (('dt_gym.gin', 'dt_sequence_bc.gin'), 'sequence_bc', 1000.0)])
def test_gin_files_build_the_official_settings(files, agent_type, scale):
  import gin  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_agents.specs import tensor_spec  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin.add_config_file_search_path(os.path.join(REPO, 'gin'))
  gin.parse_config_files_and_bindings([os.path.join(REPO, 'gin', f) for f in files], [])
  try:
    assert gin.query_parameter('train_eval.agent_type') == agent_type
    assert gin.query_parameter('train_eval.batch_size') == 64
    obs = tensor_spec.TensorSpec([11], tf.float32)
    act = tensor_spec.BoundedTensorSpec([3], tf.float32, -1.0, 1.0)
    agent = continuous.make_continuous_agent(agent_type, ts.time_step_spec(obs), act,
                                             default_target_return=3000.0)
    net = agent.network
    assert net.context_length == 20 and net.return_scale == scale
    assert net.condition_on_returns == (agent_type == 'dt')
    assert len(net._trunk.blocks) == 3 and net._trunk.width == 128
    assert agent._gradient_clipping == 0.25
    assert float(agent._optimizer.weight_decay) == pytest.approx(1e-4)
    assert agent._optimizer._learning_rate.learning_rate == pytest.approx(1e-4)
    assert agent._optimizer._learning_rate.warmup_steps == 10000
    assert float(agent.policy.target_return.numpy()) == 3000.0
    assert continuous.configured_context_length() == 20
  finally:
    gin.clear_config()
