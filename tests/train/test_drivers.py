"""A trained agent's policy, in memory and as a SavedModel, in a TF-Agents PyDriver on ALE.

This is the README's "Embedding in TF-Agents drivers" example.
"""
import numpy as np
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.metrics import py_metrics
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy

from tests.agents import helpers
from tf_offline_q.agents import cql_c51
from tf_offline_q.envs import atari
from tf_offline_q.networks import q_network


def _play(policy, seed):
  env = atari.make_atari_env('Breakout', max_episode_frames=400, seed=seed)
  returns, episodes = py_metrics.AverageReturnMetric(), py_metrics.NumberOfEpisodes()
  steps = py_metrics.EnvironmentSteps()
  py_driver.PyDriver(env, policy, [returns, episodes, steps], max_episodes=2).run(env.reset())
  env.close()
  return float(returns.result()), int(episodes.result()), int(steps.result())


def test_in_memory_and_saved_policies_run_in_a_py_driver_on_ale(tmp_path):
  net = q_network.C51QNetwork(helpers.OBS, helpers.ACT, backbone='vit_ts', variant='micro')
  agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net, learning_rate=1e-3)
  agent.initialize()
  train = tf.function(agent.train)
  for _ in range(5):
    train(helpers.batch(8))
  assert int(agent.train_step_counter) == 5

  in_memory = py_tf_eager_policy.PyTFEagerPolicy(agent.eval_policy, use_tf_function=True)
  ret, episodes, steps = _play(in_memory, seed=0)
  assert episodes == 2 and steps == 200 and np.isfinite(ret)  # 400 frames / 4 per episode

  policy_saver.PolicySaver(agent.policy, batch_size=None).save(str(tmp_path / 'greedy'))
  saved = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
      str(tmp_path / 'greedy'), load_specs_from_pbtxt=True)
  _, episodes, _ = _play(saved, seed=1)
  assert episodes == 2
  # The saved greedy policy acts exactly like the in-memory one.
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
  for obs in helpers.batch(3).observation[:, 0].numpy():
    expected = agent.policy.action(ts.restart(tf.constant(obs[None]), batch_size=1)).action
    assert int(saved.action(ts.restart(obs)).action) == int(expected[0])
