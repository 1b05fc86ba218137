"""QTransformerBcAgent: the loss is a per-dimension softmax cross-entropy, a few updates clone
the dataset action, only the loss differs from Q-Transformer; agent_type 'q_transformer_bc'
through its gin file and launch/train.py on a tiny Fetch dataset."""
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tests.agents import test_q_transformer as qt_tests
from tests.train import conftest as train_conftest
from tests.train import test_q_transformer_train as qt_train_tests
from tf_offline_q.agents import q_transformer
from tf_offline_q.agents import q_transformer_bc
from tf_offline_q.networks import action_transformer
from tf_offline_q.train import continuous

STATE, ACT, DIMS = qt_tests.STATE, qt_tests.ACT, qt_tests.DIMS
GIN_DIR = qt_train_tests.GIN_DIR
data_root = qt_train_tests.data_root  # the tiny Fetch-shaped Minari dataset (module fixture)


def _agent(net=None, **kwargs):
  agent = q_transformer_bc.QTransformerBcAgent(ts.time_step_spec(STATE), ACT,
                                               net or qt_tests._network(), **kwargs)
  agent.initialize()
  return agent


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_is_the_mean_over_dimensions_of_the_softmax_cross_entropy():
  net = qt_tests._network()                                     # dropout 0
  agent = _agent(net)
  batch = qt_tests._batch(6, seed=1)
  obs, action = batch['observation'], batch['action']
  bins = qt_tests._numpy_bins(action.numpy())                   # [6, 3] dataset bins
  # The logits teacher-forced on the dataset's bins; Q-Transformer's Q is their sigmoid.
  logits = net.q_logits(net.encode(obs), bins).numpy()          # [6, 3, 4]
  np.testing.assert_allclose(net.q_values(net.encode(obs), bins), 1 / (1 + np.exp(-logits)),
                             rtol=1e-5)
  chosen = np.take_along_axis(_log_softmax(logits), bins[..., None], -1)[..., 0]
  per_example = -chosen.mean(axis=1)                            # -1/D sum_d log p(a_d)
  info = agent.loss({'observation': obs, 'action': action})     # only these keys are read
  np.testing.assert_allclose(info.loss, per_example.mean(), rtol=1e-5)
  np.testing.assert_allclose(info.extra.cross_entropy, per_example.mean(), rtol=1e-5)
  np.testing.assert_allclose(info.extra.accuracy, (logits.argmax(-1) == bins).mean(), rtol=1e-6)
  weights = np.array([1, 0, 2, 0, 1, 1], np.float32)
  np.testing.assert_allclose(agent.loss(batch, tf.constant(weights)).loss,
                             (weights * per_example).mean(), rtol=1e-5)
  with pytest.raises(ValueError, match=r"keys \['observation', 'action'\]"):
    agent.loss({'observation': obs})
  with pytest.raises(ValueError, match=r"batch\['action'\] must have shape \[B, 3\]"):
    agent.loss({'observation': obs, 'action': action[:, :2]})


def test_a_few_updates_on_a_fixed_batch_make_the_greedy_policy_the_dataset_action():
  obs = tf.constant(np.eye(4, 5), tf.float32)
  action = tf.constant(np.random.default_rng(2).uniform(-1, 1, (4, DIMS)), tf.float32)
  agent = _agent(qt_tests._network(num_bins=8), learning_rate=3e-3)
  train = tf.function(agent.train)
  batch = {'observation': obs, 'action': action}
  first = train(batch).extra
  for _ in range(100):
    info = train(batch).extra
  assert float(info.cross_entropy) < float(first.cross_entropy) / 10
  assert float(info.accuracy) == 1.0 and float(info.gradient_norm) > 0
  assert int(agent.train_step_counter) == 101
  greedy = agent.policy.action(ts.restart(obs, batch_size=4)).action
  np.testing.assert_allclose(greedy, agent.discretizer.from_bins(agent.discretizer.to_bins(action)))


def test_only_the_loss_differs_from_q_transformer(tmp_path):
  cls = q_transformer_bc.QTransformerBcAgent
  assert issubclass(cls, q_transformer.QTransformerAgent)
  overridden = {k for k, v in vars(cls).items() if callable(v) and not isinstance(v, type)}
  assert overridden == {'__init__', '_loss'}
  net = qt_tests._network()
  bc = _agent(net)
  assert bc.q_network is net and isinstance(net, action_transformer.ActionTransformerQNetwork)
  assert type(bc.policy) is q_transformer.GreedyAutoregressivePolicy
  assert bc.eval_policy is bc.policy and bc.collect_policy is bc.policy
  # The same network's weights act the same under both agents' greedy policies.
  qtr = q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, net)
  obs = tf.constant(np.random.default_rng(3).normal(size=(5, 5)), tf.float32)
  np.testing.assert_array_equal(bc.policy.action(ts.restart(obs, batch_size=5)).action,
                                qtr.policy.action(ts.restart(obs, batch_size=5)).action)
  # No target network: none is built, so none is checkpointed (Q-Transformer's is).
  assert bc._target_q_network is None
  saved = {}
  for name, agent in (('bc', bc), ('qtr', qtr)):
    path = tf.train.Checkpoint(agent=agent).save(str(tmp_path / name))
    saved[name] = ' '.join(n for n, _ in tf.train.list_variables(path))
  assert '_target_q_network' in saved['qtr'] and '_target_q_network' not in saved['bc']
  # Q-Transformer's gin bindings do not reach it; its windows are one step of
  # Q-Transformer's layout, known before it is built.
  gin.clear_config()
  try:
    gin.parse_config(['QTransformerAgent.n_step = 3', 'QTransformerAgent.gamma = 0.5',
                      'QTransformerAgent.tau = 0.5'])
    bound = _agent()
    layout = continuous.configured_layout('q_transformer_bc', 5, DIMS)
  finally:
    gin.clear_config()
  assert (bound._n_step, bound._gamma, bound._tau) == (1, q_transformer_bc.GAMMA, 1.0)
  assert bound.window_layout == layout == q_transformer_bc.window_layout(5, DIMS)
  assert (layout.context_length, layout.next_observation) == (1, True)


def _parse(*files):
  gin.clear_config()
  gin.add_config_file_search_path(GIN_DIR)
  gin.parse_config_files_and_bindings([os.path.join(GIN_DIR, f) for f in files], [])


def test_gin_file_is_q_transformers_network_and_builds_the_agent():
  network_bindings = {}
  try:
    for name in ('q_transformer.gin', 'q_transformer_bc.gin'):
      _parse(name)
      network_bindings[name] = gin.get_bindings(action_transformer.ActionTransformerQNetwork)
    assert network_bindings['q_transformer.gin'] == network_bindings['q_transformer_bc.gin']
    _parse('q_transformer_bc.gin', 'q_transformer_local.gin')
    assert gin.query_parameter('train_eval.agent_type') == 'q_transformer_bc'
    obs = tensor_spec.TensorSpec([28], tf.float32)
    act = tensor_spec.BoundedTensorSpec([4], tf.float32, -1.0, 1.0)
    agent = continuous.make_continuous_agent('q_transformer_bc', ts.time_step_spec(obs), act)
    layout = continuous.configured_layout('q_transformer_bc', 28, 4)
  finally:
    gin.clear_config()
  assert type(agent) is q_transformer_bc.QTransformerBcAgent
  assert agent.window_layout == layout
  assert agent.q_network.num_bins == 256 and agent.q_network._width == 64  # the local shrink
  assert float(agent._optimizer.learning_rate) == pytest.approx(3e-4)
  assert 'q_transformer_bc' in continuous.CONTINUOUS_AGENTS


def test_launch_train_trains_evaluates_and_exports(tmp_path, data_root):
  run_dir = str(tmp_path / 'bc')
  source = f'minari:{data_root}:{qt_train_tests.DATASET_ID}'
  bindings = qt_train_tests.TINY + (
      f"train_eval.data_source='{source}'", 'train_eval.num_train_steps=10',
      'train_eval.eval_interval=10', 'train_eval.policy_save_interval=10')
  command = [sys.executable, os.path.join(train_conftest.REPO, 'launch', 'train.py'),
             f'--root_dir={run_dir}', '--gin_file=q_transformer_bc.gin',
             '--gin_file=q_transformer_local.gin', *(f'--gin_bindings={b}' for b in bindings)]
  proc = subprocess.run(command, cwd=train_conftest.REPO, env=train_conftest.env(),
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = proc.stdout
  assert 'windows of 1)' in out and 'step 10/10' in out
  assert 'cross_entropy=' in out and 'accuracy=' in out and 'td_loss' not in out
  records = qt_train_tests._records(run_dir)
  assert [r['step'] for r in records] == [10]
  assert records[0]['normalized'] == records[0]['success_rate']
  info = json.load(open(os.path.join(run_dir, 'run.json')))
  assert (info['method'], info['agent_type']) == ('q_transformer_bc', 'q_transformer_bc')
  fixed = json.load(open(os.path.join(run_dir, 'run_config.json')))['fixed']
  assert fixed['QTransformerBcAgent.learning_rate'] == pytest.approx(3e-4)
  assert fixed['ActionTransformerQNetwork.width'] == 16
  assert not any(k.startswith('QTransformerAgent.') for k in fixed)
  # The exported greedy policy acts on bin centres.
  policy = tf.saved_model.load(os.path.join(run_dir, 'policies', 'greedy_policy'))
  obs = tf.constant(np.random.default_rng(4).normal(size=(3, qt_train_tests.OBS_DIM)),
                    tf.float32)
  action = policy.action(ts.restart(obs, batch_size=3)).action.numpy()
  centres = -1.0 + (np.arange(16) + 0.5) * (2.0 / 16)                   # num_bins=16 (TINY)
  assert np.isclose(action[..., None], centres, atol=1e-6).any(-1).all()
