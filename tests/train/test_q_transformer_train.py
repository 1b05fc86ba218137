"""Q-Transformer (agent_type 'q_transformer') through launch/train.py on a tiny Fetch dataset:
training, success-rate records, the exported SavedModel in a fresh process, resume; the gin
files."""
import glob
import json
import os
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.train import learner
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import common

from tests.train.conftest import REPO, env
from tf_offline_q.agents import q_transformer
from tf_offline_q.data import minari_data
from tf_offline_q.eval import evaluation
from tf_offline_q.train import continuous
from tf_offline_q.train import train_eval  # pylint: disable=unused-import  (registers gin)

ENV_NAME = 'FetchPush-v4'
DATASET_ID = 'test/fetch-push-tiny-v0'
OBS_DIM, ACT_DIM = 28, 4
GIN_DIR = os.path.join(REPO, 'gin')
TINY = ('train_eval.batch_size=8', 'train_eval.steps_per_run=10',
        'train_eval.eval_max_episodes=1', 'train_eval.checkpoint_interval=10',
        'train_eval.summary_interval=10',
        'ActionTransformerQNetwork.width=16', 'ActionTransformerQNetwork.depth=1',
        'ActionTransformerQNetwork.num_heads=2', 'ActionTransformerQNetwork.num_bins=16',
        'ActionTransformerQNetwork.encoder_hidden=(16,)')


def fetch_like_episodes(num_episodes=8, seed=0):
  """Fetch-shaped episodes: every other one succeeds (reward 1 on its last,
  terminal step), the others time out with reward 0."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(num_episodes):
    n = 6 + i
    success = i % 2 == 0
    rewards = np.zeros(n, np.float32)
    rewards[-1] = float(success)
    end = np.zeros(n, bool)
    end[-1] = True
    out.append(minari_data.ContinuousEpisode(
        observations=rng.normal(size=(n + 1, OBS_DIM)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
        rewards=rewards, terminations=end & success, truncations=end & (not success)))
  return out


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('minari'))
  minari_data.write_minari_dataset(root, DATASET_ID, fetch_like_episodes(), ENV_NAME,
                                   ref_min_score=0.05, ref_max_score=1.0)
  return root


def _train(root_dir, data_root, *bindings):
  command = [sys.executable, os.path.join(REPO, 'launch', 'train.py'), f'--root_dir={root_dir}',
             '--gin_file=q_transformer.gin', '--gin_file=q_transformer_local.gin',
             f"--gin_bindings=train_eval.data_source='minari:{data_root}:{DATASET_ID}'",
             *(f'--gin_bindings={b}' for b in TINY + bindings)]
  proc = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _records(run_dir):
  with open(os.path.join(run_dir, 'eval', 'returns.jsonl')) as f:
    return [json.loads(line) for line in f]


def _restored_agent(run_dir, data_root):
  """The run's agent (its operative gin config) restored from its newest checkpoint."""
  gin.clear_config()
  gin.parse_config_file(os.path.join(run_dir, 'operative_config.gin'))
  try:
    episodes, _ = continuous.load_dataset(f'minari:{data_root}:{DATASET_ID}', ENV_NAME)
    mean, std = continuous.observation_stats(episodes)
    obs = tensor_spec.TensorSpec([OBS_DIM], tf.float32, name='observation')
    act = tensor_spec.BoundedTensorSpec([ACT_DIM], tf.float32, -1.0, 1.0, name='action')
    step = tf.Variable(0, dtype=tf.int64)
    agent = continuous.make_continuous_agent('q_transformer', ts.time_step_spec(obs), act,
                                             mean, std, train_step_counter=step)
  finally:
    gin.clear_config()
  agent.initialize()
  checkpoints = os.path.join(run_dir, learner.TRAIN_DIR, learner.POLICY_CHECKPOINT_DIR)
  common.Checkpointer(checkpoints, agent=agent,
                      train_step=step).initialize_or_restore().assert_existing_objects_matched()
  return agent, int(step.numpy())


def test_trains_evaluates_success_exports_and_resumes(tmp_path, data_root):
  run_dir = str(tmp_path / 'qtr')
  out = _train(run_dir, data_root, 'train_eval.num_train_steps=20',
               'train_eval.eval_interval=20', 'train_eval.policy_save_interval=20')
  assert 'step 20/20' in out and 'td_loss=' in out and 'conservative_loss=' in out
  assert 'success rate' in out
  records = _records(run_dir)
  assert [r['step'] for r in records] == [20] and records[0]['game'] == DATASET_ID
  record = records[0]
  assert len(record['successes']) == len(record['returns']) == 1
  # Fetch: a return is 1 on success (terminal), so the score is the success rate.
  assert record['success_rate'] == pytest.approx(record['mean_return'])
  assert record['normalized'] == record['success_rate']
  info = json.load(open(os.path.join(run_dir, 'run.json')))
  assert info['method'] == 'q_transformer' and info['agent_type'] == 'q_transformer'
  assert info['game'] == DATASET_ID
  config = json.load(open(os.path.join(run_dir, 'run_config.json')))['fixed']
  assert config['QTransformerAgent.n_step'] == 3 and config['QTransformerAgent.cql_alpha'] == 1
  assert config['ActionTransformerQNetwork.width'] == 16
  assert os.listdir(os.path.join(run_dir, 'train'))  # checkpoints and TensorBoard

  # Resume: the checkpoint and the Reverb table are restored, training goes on.
  out = _train(run_dir, data_root, 'train_eval.num_train_steps=40',
               'train_eval.eval_interval=20', 'train_eval.policy_save_interval=20')
  assert 'Resumed from checkpoint at step 20' in out and 'step 40/40' in out
  assert 'restored from its checkpoint' in out
  assert [r['step'] for r in _records(run_dir)] == [20, 40]

  # The exported greedy policy (step 40) in a fresh process acts as the
  # restored agent's greedy policy, and plays FetchPush in a PyDriver.
  agent, step = _restored_agent(run_dir, data_root)
  assert step == 40
  observations = np.random.default_rng(3).normal(size=(5, OBS_DIM)).astype(np.float32)
  np.save(tmp_path / 'obs.npy', observations)
  expected = agent.policy.action(ts.restart(tf.constant(observations), batch_size=5)).action
  policy_dir = os.path.join(run_dir, 'policies', 'greedy_policy')
  script = textwrap.dedent(f'''
      import numpy as np
      import tensorflow as tf
      from tf_agents.trajectories import time_step as ts
      from tf_offline_q.envs import continuous as envs
      from tf_offline_q.train import continuous
      policy = tf.saved_model.load({policy_dir!r})
      obs = tf.constant(np.load({str(tmp_path / 'obs.npy')!r}))
      print('ACTIONS', policy.action(ts.restart(obs, batch_size=5)).action.numpy().tolist())
      successes = []
      result = continuous.evaluate_continuous({policy_dir!r}, envs.make_continuous_env(
          {ENV_NAME!r}, seed=1), 1, successes=successes)
      print('EPISODE', result.lengths[0], successes)
  ''')
  proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                        cwd=REPO, env=env(), timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = dict(line.split(' ', 1) for line in proc.stdout.splitlines()
               if line.startswith(('ACTIONS', 'EPISODE')))
  np.testing.assert_allclose(json.loads(lines['ACTIONS']), expected.numpy(), atol=1e-6)
  centres = agent.discretizer.centres().numpy()
  assert all(np.isin(expected.numpy()[:, j], centres[j]).all() for j in range(ACT_DIM))
  length, successes = lines['EPISODE'].split(' ', 1)
  assert 1 <= int(length) <= 50 and successes in ('[True]', '[False]')


def test_configured_layout_is_the_agents_windows():
  obs = tensor_spec.TensorSpec([OBS_DIM], tf.float32)
  act = tensor_spec.BoundedTensorSpec([ACT_DIM], tf.float32, -1.0, 1.0)
  for files, n_step in ((('q_transformer.gin',), 3), (('q_transformer_one_step.gin',), 1)):
    gin.clear_config()
    gin.add_config_file_search_path(GIN_DIR)
    gin.parse_config_files_and_bindings(
        [os.path.join(GIN_DIR, f) for f in files + ('q_transformer_local.gin',)],
        ['ActionTransformerQNetwork.num_bins = 8'])
    try:
      layout = continuous.configured_layout('q_transformer', OBS_DIM, ACT_DIM)
      agent = continuous.make_continuous_agent('q_transformer', ts.time_step_spec(obs), act)
    finally:
      gin.clear_config()
    assert isinstance(agent, q_transformer.QTransformerAgent)
    assert layout == agent.window_layout
    assert (layout.context_length, layout.next_observation, layout.gamma) == (n_step, True, 0.98)
    assert agent.q_network._width == 64  # pylint: disable=protected-access
  assert continuous.configured_layout('qt', OBS_DIM, ACT_DIM).next_observation
  assert continuous.configured_layout('dt', OBS_DIM, ACT_DIM).gamma is None


def test_success_rate_records_and_reference_scores(tmp_path):
  fetch = {'dataset_id': DATASET_ID, 'env_name': ENV_NAME, 'ref_min_score': 0.05,
           'ref_max_score': 1.0}
  result = evaluation.EvalResult([1.0, 0.0, 0.0, 1.0], [12, 50, 50, 30], 142)
  record = continuous.make_continuous_eval_record(fetch, 7, result, [True, False, False, True])
  assert record['success_rate'] == 0.5 and record['normalized'] == 0.5
  assert record['successes'] == [True, False, False, True]
  assert record['d4rl_normalized'] == pytest.approx(100 * (0.5 - 0.05) / 0.95)
  maze = dict(fetch, dataset_id='test/maze-v0', env_name='PointMaze_UMaze-v3',
              ref_min_score=0.0, ref_max_score=100.0)
  record = continuous.make_continuous_eval_record(maze, 7, result, [True] * 4)
  assert record['success_rate'] == 1.0 and record['normalized'] == pytest.approx(0.005)
  with pytest.raises(ValueError, match='3 success flags for 4 episodes'):
    continuous.make_continuous_eval_record(fetch, 7, result, [True] * 3)
  path = continuous.write_reference_scores(str(tmp_path / 'refs.json'), [fetch, maze])
  scores = json.load(open(path))
  assert scores[DATASET_ID] == {'random': 0.0, 'dqn_replay': 1.0, 'one_means': 'success rate 1'}
  assert scores['test/maze-v0'] == {'random': 0.0, 'dqn_replay': 100.0, 'one_means': 'expert'}


# The continuous-control files (tests/train/test_gin_files.py checks the Atari ones).
CONTINUOUS_GIN = sorted(os.path.basename(p) for p in glob.glob(os.path.join(GIN_DIR, '*.gin'))
                        if os.path.basename(p).startswith(('dt_', 'qt', 'q_transformer',
                                                           'continuous_local')))


def test_the_experiment_gin_files_exist():
  assert {'q_transformer.gin', 'q_transformer_local.gin', 'q_transformer_no_conservative.gin',
          'q_transformer_softmax.gin', 'q_transformer_no_mc.gin', 'q_transformer_one_step.gin',
          'dt_maze.gin', 'dt_sequence_bc.gin', 'qt_maze.gin', 'continuous_local.gin',
          'qt_local.gin'} <= set(CONTINUOUS_GIN)


@pytest.mark.parametrize('name', CONTINUOUS_GIN)
def test_every_continuous_gin_file_parses(name):
  gin.clear_config()
  gin.add_config_file_search_path(GIN_DIR)
  try:
    gin.parse_config_files_and_bindings([os.path.join(GIN_DIR, name)], [])
  finally:
    gin.clear_config()
