"""The tensor specs every part of the project agrees on.

One Atari step, as the networks, agents, Reverb tables and environments see it:

  observation  uint8   [84, 84, 4]   four stacked 84x84 grey frames, oldest first
  action       int64   []            index into the ALE action set (18 = full set)
  reward       float32 []            raw (unclipped) reward; agents clip
  discount     float32 []            0 after a terminal (game over), else 1
  step_type    int32   []            TF-Agents FIRST / MID / LAST

A training batch is a TF-Agents `Trajectory` with a time axis of `n_step + 1`:
observation `[B, n_step + 1, 84, 84, 4]`, every other field `[B, n_step + 1]`.
"""
from typing import Sequence

import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

FRAME_SHAPE = (84, 84)
STACK_SIZE = 4
NUM_ACTIONS_FULL = 18


def observation_spec(frame_shape: Sequence[int] = FRAME_SHAPE,
                     stack_size: int = STACK_SIZE) -> tensor_spec.BoundedTensorSpec:
  """uint8 `[height, width, stack_size]` spec of a stacked observation."""
  return tensor_spec.BoundedTensorSpec(
      shape=tuple(frame_shape) + (stack_size,), dtype=tf.uint8,
      minimum=0, maximum=255, name='observation')


def action_spec(num_actions: int = NUM_ACTIONS_FULL) -> tensor_spec.BoundedTensorSpec:
  """Scalar int64 action in `[0, num_actions)`."""
  if num_actions < 1:
    raise ValueError(f'num_actions must be >= 1, got {num_actions}')
  return tensor_spec.BoundedTensorSpec(
      shape=(), dtype=tf.int64, minimum=0, maximum=num_actions - 1, name='action')


def time_step_spec(obs_spec=None) -> ts.TimeStep:
  return ts.time_step_spec(obs_spec if obs_spec is not None else observation_spec())


def trajectory_spec(obs_spec=None, act_spec=None) -> trajectory.Trajectory:
  """Spec of one (unbatched) `Trajectory` step, as agents' `training_data_spec`."""
  step_spec = time_step_spec(obs_spec)
  act_spec = act_spec if act_spec is not None else action_spec()
  return trajectory.from_transition(
      step_spec, policy_step.PolicyStep(action=act_spec, state=(), info=()), step_spec)
