"""Greedy and evaluation policies in TF-Agents drivers, exported with PolicySaver."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.drivers import dynamic_episode_driver
from tf_agents.drivers import py_driver
from tf_agents.environments import random_py_environment
from tf_agents.environments import tf_py_environment
from tf_agents.metrics import py_metrics
from tf_agents.metrics import tf_metrics
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tests.agents import helpers
from tf_offline_q.agents import bc
from tf_offline_q.agents import cql_c51
from tf_offline_q.agents import losses
from tf_offline_q.networks import q_network


def _cql_agent():
  agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT,
                              helpers.micro_network('vit', 'none'))
  agent.initialize()
  return agent


def _bc_agent():
  net = q_network.ActionLogitsNetwork(helpers.OBS, helpers.ACT, backbone='convnet')
  return bc.BehavioralCloningAgent(helpers.TIME_STEP_SPEC, helpers.ACT, net)


def _env(seed=0):
  return random_py_environment.RandomPyEnvironment(
      tensor_spec.to_array_spec(helpers.OBS), tensor_spec.to_array_spec(helpers.ACT),
      episode_end_probability=0.2, seed=seed)


def test_greedy_policy_is_argmax_of_expected_q():
  agent = _cql_agent()
  obs = helpers.batch(5).observation[:, 0]
  q = losses.expected_q(agent._q_network(obs)[0], agent.support)
  action = agent.policy.action(ts.restart(obs, batch_size=5)).action
  np.testing.assert_array_equal(action, tf.argmax(q, -1))


def test_eval_policy_is_epsilon_greedy_with_the_papers_epsilon():
  agent = _bc_agent()
  assert agent.eval_policy._epsilon == 0.001
  obs = tf.repeat(helpers.batch(1).observation[:, 0], 2000, axis=0)
  greedy = agent.policy.action(ts.restart(obs, batch_size=2000)).action
  noisy = agent.eval_policy.action(ts.restart(obs, batch_size=2000)).action
  differ = float(tf.reduce_mean(tf.cast(greedy != noisy, tf.float32)))
  assert differ < 0.01  # 0.001 * 17/18 expected


@pytest.mark.parametrize('make_agent', [_cql_agent, _bc_agent])
def test_policies_run_in_py_and_tf_drivers(make_agent):
  agent = make_agent()
  returns, episodes = py_metrics.AverageReturnMetric(), py_metrics.NumberOfEpisodes()
  env = _env()
  policy = py_tf_eager_policy.PyTFEagerPolicy(agent.eval_policy, use_tf_function=True)
  py_driver.PyDriver(env, policy, [returns, episodes], max_episodes=3).run(env.reset())
  assert episodes.result() == 3
  tf_env = tf_py_environment.TFPyEnvironment(_env(1))
  tf_episodes = tf_metrics.NumberOfEpisodes()
  driver = dynamic_episode_driver.DynamicEpisodeDriver(tf_env, agent.policy, [tf_episodes],
                                                       num_episodes=2)
  driver.run()
  assert int(tf_episodes.result()) == 2


@pytest.mark.parametrize('make_agent', [_cql_agent, _bc_agent])
def test_saved_policy_acts_with_only_tensorflow_and_tf_agents(make_agent, tmp_path):
  agent = make_agent()
  path = str(tmp_path / 'policy')
  policy_saver.PolicySaver(agent.policy, batch_size=None).save(path)
  obs = helpers.batch(3).observation[:, 0].numpy()
  np.save(tmp_path / 'obs.npy', obs)
  expected = agent.policy.action(ts.restart(tf.constant(obs), batch_size=3)).action.numpy()
  script = textwrap.dedent(f'''
      import sys
      import numpy as np
      import tensorflow as tf
      from tf_agents.trajectories import time_step as ts
      policy = tf.saved_model.load({path!r})
      obs = tf.constant(np.load({str(tmp_path / 'obs.npy')!r}))
      print(policy.action(ts.restart(obs, batch_size=3)).action.numpy().tolist())
      assert not any(m.startswith('tf_offline_q') for m in sys.modules), 'imported tf_offline_q'
  ''')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                       cwd=str(tmp_path), env=env, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == str(expected.tolist())
