"""BehavioralCloningAgent: it clones the dataset actions, on the same data interface."""
import numpy as np
import tensorflow as tf

from tests.agents import helpers
from tf_offline_q.agents import bc
from tf_offline_q.networks import q_network


def _agent(backbone='vit_ts', **kwargs):
  net = q_network.ActionLogitsNetwork(helpers.OBS, helpers.ACT, backbone=backbone,
                                      variant='micro', aggregation='mean')
  return bc.BehavioralCloningAgent(helpers.TIME_STEP_SPEC, helpers.ACT, net, **kwargs), net


def test_loss_is_cross_entropy_of_the_first_step_action():
  agent, net = _agent()
  experience = helpers.batch(5)
  logits = net(experience.observation[:, 0])[0].numpy()
  a = experience.action[:, 0].numpy()
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(agent.loss(experience).loss, -log_probs[np.arange(5), a].mean(),
                             rtol=1e-5)


def test_bc_learns_to_copy_the_dataset_policy():
  agent, _ = _agent('convnet', learning_rate=1e-3)
  experience = helpers.batch(12, seed=1)
  train = tf.function(agent.train)
  first = train(experience)
  for _ in range(80):
    info = train(experience)
  assert float(info.loss) < 0.2 * float(first.loss)
  assert float(info.extra.accuracy) == 1.0 and int(agent.train_step_counter) == 81
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
  step = ts.restart(experience.observation[:, 0], batch_size=12)
  np.testing.assert_array_equal(agent.policy.action(step).action, experience.action[:, 0])
