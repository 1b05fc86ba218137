"""QT (agent_type 'qt') through launch/train.py: 20 steps, one evaluation, exported policies."""
import json
import os

import pytest

from tests.train import test_continuous_train as ct
from tf_offline_q.data import minari_data


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('minari'))
  minari_data.write_minari_dataset(root, ct.DATASET_ID, ct.random_episodes(), ct.ENV_NAME,
                                   ref_min_score=0.0, ref_max_score=100.0)
  return root


def test_qt_trains_evaluates_and_exports(tmp_path, data_root):
  run_dir = str(tmp_path / 'qt')
  out = ct._train(run_dir, data_root, 'train_eval.num_train_steps=20',  # pylint: disable=protected-access
                  'train_eval.eval_interval=20', 'train_eval.policy_save_interval=20',
                  'QtAgent.num_candidates=3', 'TwinCriticNetwork.hidden_units=(16, 16)',
                  gin_files=('qt_maze.gin',))
  assert 'step 20/20' in out and 'q_term=' in out and 'critic_loss=' in out
  records = [json.loads(l) for l in open(os.path.join(run_dir, 'eval', 'returns.jsonl'))]
  assert [r['step'] for r in records] == [20] and len(records[0]['returns']) == 1
  assert records[0]['game'] == ct.DATASET_ID
  info = json.load(open(os.path.join(run_dir, 'run.json')))
  assert info['method'] == 'qt' and info['agent_type'] == 'qt'
  for name in ('greedy_policy', 'collect_policy'):
    for f in ('saved_model.pb', 'policy_specs.pbtxt'):
      assert os.path.exists(os.path.join(run_dir, 'policies', name, f))


@pytest.mark.parametrize('files,scale,eta,n_step', [
    (('qt_maze.gin',), 100.0, 5.0, None), (('qt_gym.gin',), 1000.0, 3.0, None),
    (('qt_gym.gin', 'qt_eta0.gin'), 1000.0, 0.0, None),
    (('qt_maze.gin', 'qt_one_step.gin'), 100.0, 5.0, 1)])
def test_gin_files_build_the_official_settings(files, scale, eta, n_step):
  import gin  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_agents.specs import tensor_spec  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
  from tf_offline_q.agents import qt  # pylint: disable=g-import-not-at-top
  from tf_offline_q.train import continuous  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin.add_config_file_search_path(os.path.join(ct.REPO, 'gin'))
  gin.parse_config_files_and_bindings([os.path.join(ct.REPO, 'gin', f) for f in files], [])
  try:
    assert gin.query_parameter('train_eval.agent_type') == 'qt'
    obs = tensor_spec.TensorSpec([11], tf.float32)
    act = tensor_spec.BoundedTensorSpec([3], tf.float32, -1.0, 1.0)
    agent = continuous.make_continuous_agent('qt', ts.time_step_spec(obs), act,
                                             default_target_return=3000.0)
    assert isinstance(agent, qt.QtAgent) and isinstance(agent.policy, qt.QtPolicy)
    net = agent.network
    assert net.return_scale == scale and net.condition_on_returns
    assert len(net._trunk.blocks) == 4 and net._trunk.width == 256  # pylint: disable=protected-access
    assert agent._eta == eta and agent._n_step == n_step  # pylint: disable=protected-access
    assert agent._gradient_clipping == 9.0  # pylint: disable=protected-access
    assert agent.window_layout.next_observation
    assert float(agent.policy.target_return.numpy()) == 3000.0
  finally:
    gin.clear_config()
