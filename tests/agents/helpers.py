"""Small batches and agents for the agent tests."""
import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from tf_offline_q import specs
from tf_offline_q.networks import q_network

OBS = specs.observation_spec()
ACT = specs.action_spec(18)
TIME_STEP_SPEC = specs.time_step_spec()


def batch(batch_size=6, n_step=3, seed=0, terminal_at=None, reward_scale=1.0):
  """A random `Trajectory` batch `[B, n_step + 1, ...]`.

  `terminal_at` maps a batch row to the window step whose transition ends the
  episode (discount 0 there, LAST at the next step, FIRST after it).
  """
  rng = np.random.default_rng(seed)
  t = n_step + 1
  step_type = np.full((batch_size, t), ts.StepType.MID, np.int32)
  discount = np.ones((batch_size, t), np.float32)
  for row, k in (terminal_at or {}).items():
    discount[row, k] = 0.0
    if k + 1 < t:
      step_type[row, k + 1] = ts.StepType.LAST
    if k + 2 < t:
      step_type[row, k + 2] = ts.StepType.FIRST
  next_step_type = np.concatenate([step_type[:, 1:], step_type[:, -1:]], axis=1)
  return trajectory.Trajectory(
      step_type=tf.constant(step_type),
      observation=tf.constant(rng.integers(0, 256, (batch_size, t, 84, 84, 4)), tf.uint8),
      action=tf.constant(rng.integers(0, 18, (batch_size, t)), tf.int64),
      policy_info=(),
      next_step_type=tf.constant(next_step_type),
      reward=tf.constant(reward_scale * rng.uniform(-1, 1, (batch_size, t)), tf.float32),
      discount=tf.constant(discount))


def micro_network(backbone='vit', aggregation='mean', **kwargs):
  return q_network.C51QNetwork(OBS, ACT, backbone=backbone, variant='micro',
                               aggregation=aggregation, **kwargs)
