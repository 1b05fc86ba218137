"""Scripted policies for FetchPush and FetchPickAndPlace, over the flat observation.

The flat observation of `tf_offline_q.envs.continuous` for Fetch is 28 numbers:

  [0:3]   gripper position          [3:6]   object position
  [6:9]   object - gripper          [9:11]  finger positions (gripper width)
  [11:14] object rotation           [14:17] object velocity (relative)
  [17:20] object angular velocity   [20:23] gripper velocity
  [23:25] finger velocities         [25:28] desired goal (object target)

Actions are [dx, dy, dz, grip] in [-1, 1]; the arm moves 5 cm per unit of
dx/dy/dz per step, grip -1 closes and +1 opens the fingers.

`FetchPushScript`: raise the gripper, move above a point 6 cm behind the
object (on the side away from the goal), descend to the object's height and
push it along the object -> goal line with closed fingers; re-approach if the
object drifts off the line.
`FetchPickAndPlaceScript`: move above the object with open fingers, descend,
close the fingers, then carry the object to the goal (also in the air).

Both are small state machines: call `reset()` at each episode start
(`generation.rollout` does). `noise` adds Gaussian noise of that standard
deviation to every action and `random_action_prob` replaces the action by a
uniform one: with enough of both the episodes mostly fail (Q-Transformer's
"autonomous" data).
"""
from typing import Optional

import numpy as np

GRIP, OBJECT, REL, FINGERS, GOAL = (slice(0, 3), slice(3, 6), slice(6, 9),
                                    slice(9, 11), slice(25, 28))
_STEP = 0.05   # metres per unit action and step


def _move(delta: np.ndarray, gain: float = 1.0) -> np.ndarray:
  """Position part of an action that moves the gripper by `delta` metres."""
  return np.clip(gain * delta / _STEP, -1.0, 1.0)


class _Script:
  """Common parts: phase bookkeeping, noise."""

  def __init__(self, noise: float = 0.0, random_action_prob: float = 0.0,
               rng: Optional[np.random.Generator] = None):
    self.noise = float(noise)
    self.random_action_prob = float(random_action_prob)
    self.rng = rng if rng is not None else np.random.default_rng()
    self.reset()

  def reset(self) -> None:
    self.phase = 0
    self.steps_in_phase = 0

  def _next_phase(self, phase: int) -> None:
    self.phase = phase
    self.steps_in_phase = 0

  def _act(self, observation: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    observation = np.asarray(observation, np.float64)
    action = self._act(observation)
    self.steps_in_phase += 1
    if self.noise > 0:
      action = action + self.noise * self.rng.standard_normal(4)
    if self.random_action_prob > 0 and self.rng.random() < self.random_action_prob:
      action = self.rng.uniform(-1.0, 1.0, 4)
    return np.clip(action, -1.0, 1.0).astype(np.float32)


class FetchPushScript(_Script):
  """Pushes the object to the goal (module docstring)."""

  BEHIND = 0.06   # gripper starts this far behind the object
  LIFT = 0.05     # height above the object while travelling

  def _act(self, observation: np.ndarray) -> np.ndarray:
    grip, obj, goal = observation[GRIP], observation[OBJECT], observation[GOAL]
    to_goal = goal[:2] - obj[:2]
    distance = np.linalg.norm(to_goal)
    direction = to_goal / max(distance, 1e-6)
    behind = np.r_[obj[:2] - self.BEHIND * direction, obj[2]]
    action = np.zeros(4)
    action[3] = -1.0   # fingers closed: a flat pusher
    if distance < 0.01:
      return action    # there: hold still
    # Distance of the gripper from the object -> goal line, and along it.
    offset = grip[:2] - obj[:2]
    along = float(offset @ direction)            # < 0: behind the object
    across = float(np.linalg.norm(offset - along * direction))
    lined_up = along < -0.02 and across < 0.02 and abs(grip[2] - obj[2]) < 0.02
    if self.phase == 1 and not (across < 0.035 and along < 0.0):
      self._next_phase(0)   # lost the object: approach again
    if self.phase == 0:
      if lined_up:
        self._next_phase(1)
      elif np.linalg.norm(grip[:2] - behind[:2]) > 0.015:
        # Travel above the object's height to the point behind it.
        target = np.r_[behind[:2], obj[2] + self.LIFT]
        if grip[2] < obj[2] + self.LIFT - 0.02 and np.linalg.norm(
            grip[:2] - obj[:2]) < 0.08:
          target = np.r_[grip[:2], obj[2] + self.LIFT]   # rise first
        action[:3] = _move(target - grip, 2.0)
        return action
      else:
        action[:3] = _move(behind - grip, 2.0)
        return action
    # Push: aim a little beyond the goal along the line, at object height.
    target = np.r_[goal[:2] - 0.02 * direction, obj[2]]
    # Correct sideways drift by steering the contact point.
    action[:3] = _move(target - grip, 1.0)
    action[:3] = np.clip(action[:3], -0.5, 0.5)
    return action


class FetchPickAndPlaceScript(_Script):
  """Grasps the object and carries it to the goal (module docstring)."""

  LIFT = 0.05

  def _act(self, observation: np.ndarray) -> np.ndarray:
    grip, obj, goal = observation[GRIP], observation[OBJECT], observation[GOAL]
    width = float(np.sum(observation[FINGERS]))
    action = np.zeros(4)
    if self.phase == 0:      # above the object, fingers open
      action[3] = 1.0
      target = np.r_[obj[:2], obj[2] + self.LIFT]
      if np.linalg.norm(grip[:2] - obj[:2]) < 0.01:
        self._next_phase(1)
      action[:3] = _move(target - grip, 2.0)
      return action
    if self.phase == 1:      # descend around it
      action[3] = 1.0
      action[:3] = _move(obj - grip, 2.0)
      if np.linalg.norm(obj - grip) < 0.01:
        self._next_phase(2)
      elif np.linalg.norm(grip[:2] - obj[:2]) > 0.02:
        self._next_phase(0)
      return action
    if self.phase == 2:      # close
      action[3] = -1.0
      action[:3] = _move(obj - grip, 2.0)
      if self.steps_in_phase >= 3:
        self._next_phase(3)
      return action
    # Carry (fingers closed); re-grasp if the object was dropped.
    action[3] = -1.0
    if np.linalg.norm(obj - grip) > 0.03 or width < 0.01:
      self._next_phase(0)
      action[3] = 1.0
      return action
    action[:3] = _move(goal - obj, 2.0)
    return action


def scripted_policy(env_name: str, noise: float = 0.0,
                    random_action_prob: float = 0.0,
                    rng: Optional[np.random.Generator] = None) -> _Script:
  """The script of 'FetchPush-v4' or 'FetchPickAndPlace-v4'."""
  from tf_offline_q.envs import continuous  # pylint: disable=g-import-not-at-top
  name = continuous.canonical_env_name(env_name)
  if name == 'FetchPush-v4':
    return FetchPushScript(noise, random_action_prob, rng)
  if name == 'FetchPickAndPlace-v4':
    return FetchPickAndPlaceScript(noise, random_action_prob, rng)
  raise ValueError(f'No scripted policy for {env_name!r}: only '
                   f'{", ".join(continuous.FETCH_ENVS)}')
