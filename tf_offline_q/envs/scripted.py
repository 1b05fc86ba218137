r"""Scripted (hand-written) behaviour policies for ALE and MinAtar games, as TF-Agents `TFPolicy`s.

They are pure TensorFlow ops on the preprocessed observation (uint8
`[B, 84, 84, 4]`, oldest frame first, see `tf_offline_q.envs.atari` and
`tf_offline_q.envs.minatar`), so a
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

MinAtar-Breakout (minimal action set: 0 NOOP, 1 LEFT, 2 RIGHT)
---------------------------------------------------------------
Drawn by `tf_offline_q.envs.minatar`: a 10x10 grid of 7x7-pixel cells inside a
7-pixel black border, each cell one grey level (`minatar.grey_levels(4)`:
paddle 63, ball 127, trail 191 = the ball's previous cell, brick 255; the
highest channel wins, so a brick hides the ball or the trail, and the trail
hides the ball when both share a cell). The cell centres are pixels
`10, 17, ..., 73`, i.e. `obs[:, 10:80:7, 10:80:7, k]` is the `[B, 10, 10]`
grid of frame `k`. The ball moves one cell diagonally per step; at a side wall
it stays one extra step on the wall column (columns ..., 1, 0, 0, 1, ...); a
brick or the paddle sends it back to the row it came from (one sideways step);
the paddle lives on row 9 and catches the ball if, after the move, it is under
the ball's column on row 8 or under the column the ball steps to.

Policy, on the cells of the newest frame (and, as a fallback, the previous):

  * ball = the cell with the ball level; if none (at reset the ball sits under
    a brick, or under its own trail), the trail cell. Where it came from: the
    trail cell; if a brick hides it, the previous frame's ball cell; if that
    is hidden too, the previous frame's trail;
  * direction dx = sign(ball_x - from_x), dy = sign(ball_y - from_y). A
    sideways step on row 8 is a paddle bounce: dy = -1, and dx is reversed if
    the ball stepped onto the paddle's column (MinAtar turns it around).
    Unknown components (no distinct trail, or no move along that axis) are
    guessed as dy = +1 and dx = +1 if ball_x < 5 else -1 (after two steps on
    a wall column the ball heads back into the field);
  * steps until the ball reaches row 9: 9 - ball_y if falling (dy > 0); if
    rising, ball_y + 8 - 2 * bounce_row, assuming it bounces back from the
    lowest brick row (`bounce_row` = 3; None: aim at the ball's column
    instead);
  * target = the column after that many steps, reflected the way MinAtar
    reflects at walls: p = ball_x + dx * steps, m = p mod 20,
    x = m if m <= 9 else 19 - m;
  * LEFT if target < paddle column, RIGHT if target > paddle, else NOOP (also
    NOOP when the ball or the paddle is not visible, e.g. right after reset).

Measured with sticky actions 0.25, a 5000-step cap, 20 episodes (seeds
1000..1019): random play 0.4 mean return; this policy 15.7 (14.6 on seeds
0..19); with bounce_row=None (follow the rising ball) 4.5 (5.0).

  policy = make_scripted_policy('Breakout', env_time_step_spec, env_action_spec)
  export_scripted_policy('Breakout', '/tmp/breakout_policy')
  export_scripted_policy('MinAtar-Breakout', '/tmp/minatar_breakout_policy')
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
from tf_offline_q.envs import minatar

SCRIPTED_GAMES = ('Breakout', 'MinAtar-Breakout')

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


class _ScriptedPolicy(tf_policy.TFPolicy):
  """A deterministic policy whose subclasses write `_action` only."""

  def _distribution(self, time_step, policy_state):
    step = self._action(time_step, policy_state, seed=None)
    return step._replace(
        action=tfp.distributions.Deterministic(loc=step.action))


class ScriptedBreakoutPolicy(_ScriptedPolicy):
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


# MinAtar-Breakout geometry (see the module docstring and `tf_offline_q.envs.minatar`).
_MINATAR_CENTRE = minatar.BORDER + minatar.CELL // 2                  # 10
_MINATAR_STOP = _MINATAR_CENTRE + minatar.GRID * minatar.CELL          # 80
_MINATAR_PADDLE, _MINATAR_BALL, _MINATAR_TRAIL, _MINATAR_BRICK = (
    int(level) for level in minatar.grey_levels(4))                    # 63 127 191 255
_MINATAR_NOOP, _MINATAR_LEFT, _MINATAR_RIGHT = 0, 1, 2


def _minatar_cells(frames: tf.Tensor) -> tf.Tensor:
  """uint8 `[B, 84, 84]` frames -> int32 `[B, 10, 10]` grey level of each cell."""
  return tf.cast(frames[:, _MINATAR_CENTRE:_MINATAR_STOP:minatar.CELL,
                        _MINATAR_CENTRE:_MINATAR_STOP:minatar.CELL], tf.int32)


def _find_cell(mask: tf.Tensor):
  """First True cell of a `[B, 10, 10]` mask: (row, column, found), int32 `[B]`."""
  flat = tf.reshape(tf.cast(mask, tf.int32), [-1, minatar.GRID * minatar.GRID])
  index = tf.argmax(flat, axis=1, output_type=tf.int32)
  return index // minatar.GRID, index % minatar.GRID, tf.reduce_any(flat > 0, axis=1)


class ScriptedMinAtarBreakoutPolicy(_ScriptedPolicy):
  """MinAtar-Breakout: moves the paddle to where the ball will land (module docstring).

  Args:
    time_step_spec: TF-Agents time-step spec (observation uint8 `[84, 84, 4]`).
    action_spec: scalar int spec of the 3 minimal actions (NOOP, LEFT, RIGHT).
    bounce_row: while the ball rises, aim where it will land if it bounces
      back down from this row (3, the lowest brick row); None: follow the
      ball's column instead (plainer, about 3x fewer points with sticky
      actions, see the module docstring).
    name: policy name.
  """

  def __init__(self, time_step_spec, action_spec, bounce_row: Optional[int] = 3,
               name: Optional[str] = None):
    num_actions = int(action_spec.maximum) - int(action_spec.minimum) + 1
    if num_actions != 3:
      raise ValueError('The scripted MinAtar-Breakout policy needs the minimal '
                       f'action set (3 actions), got {num_actions}; use '
                       'full_action_space=False.')
    if bounce_row is not None and not 0 <= bounce_row < minatar.GRID - 1:
      raise ValueError(f'bounce_row must be in [0, {minatar.GRID - 1}) or None, '
                       f'got {bounce_row}')
    super().__init__(time_step_spec, action_spec, name=name)
    self._bounce_row = bounce_row

  def _action(self, time_step, policy_state, seed):
    del seed
    last_row = minatar.GRID - 1                                 # the paddle's row, 9
    obs = time_step.observation                                 # [B,84,84,4]
    now = _minatar_cells(obs[..., -1])                          # [B,10,10]
    before = _minatar_cells(obs[..., -2])
    paddle_row = tf.cast(tf.equal(now[:, last_row, :], _MINATAR_PADDLE), tf.int32)
    paddle = tf.argmax(paddle_row, axis=1, output_type=tf.int32)
    paddle_seen = tf.reduce_any(paddle_row > 0, axis=1)
    ball_y, ball_x, ball_seen = _find_cell(tf.equal(now, _MINATAR_BALL))
    trail_y, trail_x, trail_seen = _find_cell(tf.equal(now, _MINATAR_TRAIL))
    old_y, old_x, old_seen = _find_cell(tf.equal(before, _MINATAR_BALL))
    older_y, older_x, older_seen = _find_cell(tf.equal(before, _MINATAR_TRAIL))
    # Ball hidden (under a brick or its trail): use the trail cell.
    ball_y = tf.where(ball_seen, ball_y, trail_y)
    ball_x = tf.where(ball_seen, ball_x, trail_x)
    seen = ball_seen | trail_seen
    # Where the ball came from: the trail; if a brick hides it, the previous
    # frame's ball cell (the same cell); if that is hidden too, the previous
    # frame's trail (two steps back: same signs unless it bounced).
    use_trail = ball_seen & trail_seen
    use_old = ~use_trail & old_seen
    from_y = tf.where(use_trail, trail_y, tf.where(use_old, old_y, older_y))
    from_x = tf.where(use_trail, trail_x, tf.where(use_old, old_x, older_x))
    known = use_trail | (seen & (old_seen | older_seen))
    dx = tf.where(known, tf.sign(ball_x - from_x), 0)
    dy = tf.where(known, tf.sign(ball_y - from_y), 0)
    # A sideways step on row 8 is a bounce off the paddle: the ball now rises,
    # and if it stepped onto the paddle's column it was also turned around.
    # (With bounce_row 3 it rises and falls for 10 steps, half the walls'
    # period, so either way gives the same column; other rows need it.)
    paddle_bounce = tf.equal(ball_y, last_row - 1) & tf.equal(dy, 0) & tf.not_equal(dx, 0)
    dx = tf.where(paddle_bounce & tf.equal(ball_x, paddle), -dx, dx)
    dy = tf.where(paddle_bounce, -1, dy)
    # Unknown components: falling, and back into the field.
    dx = tf.where(tf.equal(dx, 0), tf.where(ball_x < minatar.GRID // 2, 1, -1), dx)
    dy = tf.where(tf.equal(dy, 0), 1, dy)
    # Steps until the ball reaches the paddle row: falling 9 - y; rising
    # (y - b - 1) + 1 + (8 - b) when it bounces back from a brick on row b.
    if self._bounce_row is None:
      rising_steps = tf.zeros_like(ball_y)
    else:
      rising_steps = ball_y + last_row - 1 - 2 * self._bounce_row
    steps = tf.where(dy > 0, last_row - ball_y, rising_steps)
    # Column after `steps` diagonal steps, reflected at the walls like MinAtar
    # (the ball spends two steps on a wall column: ..., 1, 0, 0, 1, ...).
    period = 2 * minatar.GRID
    folded = tf.math.floormod(ball_x + dx * steps, period)
    target = tf.where(folded < minatar.GRID, folded, period - 1 - folded)
    move = tf.where(target < paddle, _MINATAR_LEFT,
                    tf.where(target > paddle, _MINATAR_RIGHT, _MINATAR_NOOP))
    action = tf.where(seen & paddle_seen, move, _MINATAR_NOOP)
    action = tf.cast(action, self.action_spec.dtype)
    return policy_step.PolicyStep(action, policy_state, ())


def make_scripted_policy(game: str, time_step_spec=None, action_spec=None,
                         **options) -> tf_policy.TFPolicy:
  """A scripted `TFPolicy` for `game` ('Breakout' or 'MinAtar-Breakout', minimal action set).

  Args:
    game: 'Breakout' (ALE, case-insensitive) or 'MinAtar-Breakout' (any
      spelling `games.canonical_game_name` accepts, e.g. 'minatar:breakout').
    time_step_spec: TF-Agents time-step spec (default: the project's).
    action_spec: scalar int64 bounded spec (default: the game's minimal action
      set, 4 ALE Breakout / 3 MinAtar-Breakout actions).
    **options: keyword arguments of the policy class (ALE Breakout:
      `dead_zone`, `lead`; MinAtar-Breakout: `bounce_row`).

  Raises:
    ValueError: no scripted policy for `game` (or an unknown MinAtar game), or
      an action spec other than the minimal action set.
  """
  if minatar.is_minatar_game(game):
    name = minatar.canonical_game_name(game)   # Same rule as games.canonical_game_name.
    if name != 'MinAtar-Breakout':
      raise ValueError(f'No scripted policy for {game!r}; available: '
                       f'{", ".join(SCRIPTED_GAMES)}')
    policy_class, num_actions = ScriptedMinAtarBreakoutPolicy, 3
  else:
    key = ''.join(c for c in game.lower() if c.isalnum())
    if key != 'breakout':
      raise ValueError(f'No scripted policy for {game!r}; available: '
                       f'{", ".join(SCRIPTED_GAMES)}')
    policy_class, num_actions = ScriptedBreakoutPolicy, 4
  if time_step_spec is None:
    time_step_spec = specs.time_step_spec()
  if action_spec is None:
    action_spec = specs.action_spec(num_actions)
  time_step_spec = tensor_spec.from_spec(time_step_spec)
  action_spec = tensor_spec.from_spec(action_spec)
  return policy_class(time_step_spec, action_spec, **options)


def export_scripted_policy(game: str, output_dir: str, time_step_spec=None,
                           action_spec=None, **options) -> str:
  """Saves the scripted policy of `game` with `PolicySaver`; returns the dir.

  `options` go to the policy class (see `make_scripted_policy`).
  """
  policy = make_scripted_policy(game, time_step_spec, action_spec, **options)
  os.makedirs(os.path.dirname(os.path.abspath(output_dir)), exist_ok=True)
  policy_saver.PolicySaver(policy, batch_size=None).save(output_dir)
  return output_dir
