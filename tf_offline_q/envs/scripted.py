r"""Scripted (hand-written) behaviour policies for ALE games, as TF-Agents `TFPolicy`s.

They are pure TensorFlow ops on the preprocessed observation (uint8
`[B, 84, 84, 4]`, oldest frame first, see `tf_offline_q.envs.atari`), so a
`PolicySaver` export is an ordinary SavedModel that
`launch/generate_dqn_replay.py --policy_dir=...` can load as a behaviour policy.
They give a reasonably good, far-from-random policy for making offline data
without training an online agent first.

Breakout (minimal action set: 0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT)
---------------------------------------------------------------
Measured on the 84x84 max-pooled grey frames (DQN preprocessing):

  * walls: columns 0-3 and 80-83 (grey 142), with a dim edge (28) on columns 4
    and 79; the playing field is columns 5..78;
  * bricks: rows 22-37; score: rows 2-5;
  * paddle: rows 75-77, brightest (110) on row 76, 8 columns wide (narrower
    later in the game);
  * ball: about 2x2 pixels, brightest value ~110, anywhere in the field.

Policy: find the ball below the bricks (rows 38..74) in the newest frame; if it
is not there, in the previous frame. If it is visible, aim the paddle centre
at the ball's column extrapolated by its horizontal velocity (newest minus
previous frame) and move RIGHT / LEFT when further than a small dead zone, else
NOOP. If no ball is visible below the bricks, press FIRE (launches a new ball;
a no-op while a ball is in play).

  policy = make_scripted_policy('Breakout', env_time_step_spec, env_action_spec)
  export_scripted_policy('Breakout', '/tmp/breakout_policy')
"""
import os
from typing import Optional

import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.policies import policy_saver
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step

from tf_offline_q import specs

SCRIPTED_GAMES = ('Breakout',)

# Breakout geometry on the 84x84 frame (see the module docstring).
_FIELD_COLS = (5, 79)          # [start, stop) of the playing field
_BALL_ROWS = (38, 75)          # below the bricks, above the paddle
_PADDLE_ROW = 76
_BALL_THRESHOLD = 40           # ball pixels (peak ~110) vs black background
_PADDLE_THRESHOLD = 60
_NOOP, _FIRE, _RIGHT, _LEFT = 0, 1, 2, 3


def _column_centre(mask: tf.Tensor):
  """Mean column of the True pixels of a `[B, H, W]` mask, and whether any."""
  mask = tf.cast(mask, tf.float32)
  per_col = tf.reduce_sum(mask, axis=1)                       # [B, W]
  count = tf.reduce_sum(per_col, axis=1)                      # [B]
  cols = tf.range(tf.shape(per_col)[1], dtype=tf.float32)[None]
  centre = tf.reduce_sum(per_col * cols, axis=1) / tf.maximum(count, 1.0)
  return centre, count > 0


class ScriptedBreakoutPolicy(tf_policy.TFPolicy):
  """Moves the paddle under the ball; FIRE when no ball is in flight."""

  def __init__(self, time_step_spec, action_spec, dead_zone: float = 2.0,
               lead: float = 2.0, name: Optional[str] = None):
    num_actions = int(action_spec.maximum) - int(action_spec.minimum) + 1
    if num_actions != 4:
      raise ValueError('The scripted Breakout policy needs the minimal action '
                       f'set (4 actions), got {num_actions}; use '
                       'full_action_space=False.')
    super().__init__(time_step_spec, action_spec, name=name)
    self._dead_zone = dead_zone
    self._lead = lead

  def _distribution(self, time_step, policy_state):
    step = self._action(time_step, policy_state, seed=None)
    return step._replace(
        action=tfp.distributions.Deterministic(loc=step.action))

  def _action(self, time_step, policy_state, seed):
    del seed
    obs = time_step.observation                                 # [B,84,84,4]
    c0, c1 = _FIELD_COLS
    r0, r1 = _BALL_ROWS
    field = obs[:, r0:r1, c0:c1, :]
    ball_now, seen_now = _column_centre(field[..., -1] > _BALL_THRESHOLD)
    ball_prev, seen_prev = _column_centre(field[..., -2] > _BALL_THRESHOLD)
    paddle, seen_paddle = _column_centre(
        obs[:, _PADDLE_ROW, c0:c1, -1][:, None, :] > _PADDLE_THRESHOLD)
    velocity = tf.where(seen_now & seen_prev, ball_now - ball_prev, 0.0)
    ball = tf.where(seen_now, ball_now + self._lead * velocity, ball_prev)
    seen = seen_now | seen_prev
    offset = ball - paddle
    move = tf.where(offset > self._dead_zone, _RIGHT,
                    tf.where(offset < -self._dead_zone, _LEFT, _NOOP))
    action = tf.where(seen & seen_paddle, move, _FIRE)
    action = tf.cast(action, self.action_spec.dtype)
    return policy_step.PolicyStep(action, policy_state, ())


def make_scripted_policy(game: str, time_step_spec=None,
                         action_spec=None) -> tf_policy.TFPolicy:
  """A scripted `TFPolicy` for `game` (only 'Breakout', minimal action set).

  Args:
    game: ALE game name (case-insensitive).
    time_step_spec: TF-Agents time-step spec (default: the project's).
    action_spec: scalar int64 bounded spec (default: the 4 minimal Breakout
      actions).
  """
  key = ''.join(c for c in game.lower() if c.isalnum())
  if key != 'breakout':
    raise ValueError(f'No scripted policy for {game!r}; available: '
                     f'{", ".join(SCRIPTED_GAMES)}')
  if time_step_spec is None:
    time_step_spec = specs.time_step_spec()
  if action_spec is None:
    action_spec = specs.action_spec(4)
  time_step_spec = tensor_spec.from_spec(time_step_spec)
  action_spec = tensor_spec.from_spec(action_spec)
  return ScriptedBreakoutPolicy(time_step_spec, action_spec)


def export_scripted_policy(game: str, output_dir: str, time_step_spec=None,
                           action_spec=None) -> str:
  """Saves the scripted policy of `game` with `PolicySaver`; returns the dir."""
  policy = make_scripted_policy(game, time_step_spec, action_spec)
  os.makedirs(os.path.dirname(os.path.abspath(output_dir)), exist_ok=True)
  policy_saver.PolicySaver(policy, batch_size=None).save(output_dir)
  return output_dir
