"""MinAtar as an Atari-shaped PyEnvironment, and the scripted MinAtar-Breakout policy."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q import specs
from tf_offline_q.envs import games
from tf_offline_q.envs import minatar
from tf_offline_q.envs import scripted

# Breakout: channels paddle, ball, trail, brick; minimal actions NOOP, LEFT, RIGHT.
PADDLE, BALL, TRAIL, BRICK = range(4)
NOOP, LEFT, RIGHT = 0, 1, 2


def _state(ball=None, trail=None, paddle=4, brick_rows=(1, 2, 3), cleared=()):
  """A Breakout state bool `[10, 10, 4]`; ball, trail, cleared bricks are (row, column)."""
  state = np.zeros((10, 10, 4), bool)
  state[list(brick_rows), :, BRICK] = True
  for row, column in cleared:
    state[row, column, BRICK] = False
  state[9, paddle, PADDLE] = True
  if ball is not None:
    state[ball[0], ball[1], BALL] = True
  if trail is not None:
    state[trail[0], trail[1], TRAIL] = True
  return state


def _observation(*states):
  """Stack of the frames drawn from `states` (oldest first), zeros before them."""
  obs = np.zeros((84, 84, 4), np.uint8)
  for k, state in enumerate(states):
    obs[..., 4 - len(states) + k] = minatar.draw_frame(state)
  return obs


def _time_steps(observations):
  batch = len(observations)
  return ts.TimeStep(step_type=tf.fill([batch], ts.StepType.MID),
                     reward=tf.zeros([batch]), discount=tf.ones([batch]),
                     observation=tf.constant(np.stack(observations)))


def _paddle_column(observation):
  return np.flatnonzero(minatar.read_cells(observation[..., -1])[9] == 63)


# --- names and specs ---------------------------------------------------------


def test_canonical_names_and_dispatch():
  for name in ('minatar:breakout', 'MinAtar/Breakout', 'MINATAR-BREAKOUT'):
    assert minatar.canonical_game_name(name) == 'MinAtar-Breakout'
    assert games.canonical_game_name(name) == 'MinAtar-Breakout'
  assert games.canonical_game_name('minatar-space_invaders') == 'MinAtar-SpaceInvaders'
  with pytest.raises(ValueError, match="'MinAtar-Pong'") as error:
    games.canonical_game_name('MinAtar-Pong')
  assert 'MinAtar-Breakout' in str(error.value)
  assert games.canonical_game_name('pong') == 'Pong'
  assert set(minatar.GAMES) <= set(games.valid_games())
  env = games.make_env('minatar:breakout', seed=0)
  assert isinstance(env, minatar.MinAtarEnvironment) and env.game == 'MinAtar-Breakout'
  from tf_offline_q.envs import atari  # pylint: disable=g-import-not-at-top
  pong = games.make_env('pong', seed=0)
  assert isinstance(pong, atari.AtariEnvironment)
  pong.close()


def test_specs():
  env = minatar.make_minatar_env('MinAtar-Breakout')
  assert env.observation_spec() == tensor_spec.to_array_spec(specs.observation_spec())
  assert env.observation_spec().dtype == np.uint8
  assert env.observation_spec().shape == (84, 84, 4)
  assert env.action_spec() == tensor_spec.to_array_spec(specs.action_spec(3))
  assert env.num_actions == 3
  full = minatar.make_minatar_env('MinAtar-Breakout', full_action_space=True)
  assert full.action_spec() == tensor_spec.to_array_spec(specs.action_spec(6))
  observation = env.reset().observation
  assert observation.dtype == np.uint8 and observation.shape == (84, 84, 4)


# --- drawing -----------------------------------------------------------------


def test_draw_frame_and_read_cells():
  assert list(minatar.grey_levels(4)) == [63, 127, 191, 255]
  state = _state(ball=(5, 6), trail=(4, 5), paddle=2, brick_rows=(1,))
  state[1, 3, BALL] = True           # ball under a brick: the brick shows
  frame = minatar.draw_frame(state)
  assert frame.shape == (84, 84) and frame.dtype == np.uint8
  expected = np.zeros((10, 10), np.uint8)
  expected[1, :] = 255
  expected[5, 6] = 127
  expected[4, 5] = 191
  expected[9, 2] = 63
  np.testing.assert_array_equal(minatar.read_cells(frame), expected)
  # Black 7-pixel border; every cell a uniform 7x7 block.
  border = np.ones((84, 84), bool)
  border[7:77, 7:77] = False
  assert not frame[border].any()
  blocks = frame[7:77, 7:77].reshape(10, 7, 10, 7).transpose(0, 2, 1, 3)
  np.testing.assert_array_equal(blocks, np.broadcast_to(expected[..., None, None], blocks.shape))
  # read_cells works on stacks too ([..., 84, 84]).
  stacked = np.stack([frame, np.zeros_like(frame)])
  np.testing.assert_array_equal(minatar.read_cells(stacked)[0], expected)
  for bad in (np.zeros((10, 10)), np.zeros((9, 10, 4)), np.zeros((10, 10, 4, 1))):
    with pytest.raises(ValueError, match='10, 10, C'):
      minatar.draw_frame(bad)


# --- stack and episodes --------------------------------------------------------


def test_frame_stack_oldest_first():
  env = minatar.make_minatar_env('MinAtar-Breakout', seed=0)
  first = env.reset()
  assert first.step_type == ts.StepType.FIRST
  assert not first.observation[..., :3].any() and first.observation[..., 3].any()
  previous = first.observation
  for action in (RIGHT, RIGHT, LEFT):
    observation = env.step(np.int64(action)).observation
    np.testing.assert_array_equal(observation[..., :3], previous[..., 1:])
    np.testing.assert_array_equal(observation[..., -1],
                                  minatar.draw_frame(env.minatar_env.state()))
    assert not np.array_equal(observation[..., -1], previous[..., -1])   # the ball moved
    previous = observation


def test_game_over_is_terminal_with_discount_zero():
  env = minatar.make_minatar_env('MinAtar-Breakout', sticky_action_prob=0.0, seed=0)
  time_step = env.reset()
  total = 0.0
  for _ in range(200):
    time_step = env.step(np.int64(LEFT))          # the paddle leaves; the ball drops
    total += float(time_step.reward)
    if time_step.is_last():
      break
  assert time_step.step_type == ts.StepType.LAST and time_step.discount == 0.0
  assert env.last_episode == {'return': total, 'frames': env.episode_steps,
                              'steps': env.episode_steps, 'truncated': False}
  assert env.step(np.int64(NOOP)).step_type == ts.StepType.FIRST


def test_step_cap_truncates_with_discount_one():
  env = minatar.make_minatar_env('MinAtar-Breakout', max_episode_frames=3, seed=0)
  env.reset()
  # The ball starts on row 3 and needs 6 steps to reach the paddle row.
  steps = [env.step(np.int64(NOOP)) for _ in range(3)]
  assert [int(s.step_type) for s in steps] == [ts.StepType.MID, ts.StepType.MID,
                                                ts.StepType.LAST]
  assert steps[-1].discount == 1.0
  assert env.last_episode['truncated'] and env.last_episode['steps'] == 3
  assert env.num_episodes == 1
  restart = env.step(np.int64(NOOP))
  assert restart.step_type == ts.StepType.FIRST
  assert not restart.observation[..., :3].any()


def test_invalid_action_raises():
  env = minatar.make_minatar_env('MinAtar-Breakout', seed=0)
  env.reset()
  for action in (3, -1):
    with pytest.raises(ValueError, match=r'\[0, 3\)'):
      env.step(np.int64(action))


def test_seeded_envs_are_reproducible():
  actions = np.random.default_rng(0).integers(3, size=300)

  def play(seed):
    env = minatar.make_minatar_env('MinAtar-Breakout', seed=seed)
    steps = [env.reset()] + [env.step(np.int64(a)) for a in actions]
    return (np.stack([s.observation for s in steps]),
            np.array([s.reward for s in steps]), env.num_episodes)

  observations, rewards, episodes = play(5)
  again, again_rewards, _ = play(5)
  assert episodes > 1                                    # crosses resets
  np.testing.assert_array_equal(observations, again)
  np.testing.assert_array_equal(rewards, again_rewards)
  assert not np.array_equal(observations, play(6)[0])


def test_always_sticky_repeats_noop_so_paddle_never_moves():
  env = minatar.make_minatar_env('MinAtar-Breakout', sticky_action_prob=1.0, seed=0)
  time_step = env.reset()
  start = _paddle_column(time_step.observation)
  assert list(start) == [4]
  rng = np.random.default_rng(1)
  for _ in range(60):                                    # several episodes
    time_step = env.step(np.int64(rng.choice([LEFT, RIGHT])))
    assert list(_paddle_column(time_step.observation)) == [4]
  assert env.num_episodes >= 2
  # Without stickiness the same actions move it.
  moving = minatar.make_minatar_env('MinAtar-Breakout', sticky_action_prob=0.0, seed=0)
  moving.reset()
  assert list(_paddle_column(moving.step(np.int64(LEFT)).observation)) == [3]


# --- the scripted MinAtar-Breakout policy ------------------------------------

# (previous state, newest state) -> expected action. Ball positions are
# (row, column); the trail is the ball's previous cell.
_CASES = [
    # Falling down-left from (4, 3): lands on row 9 at column 1 after bouncing
    # off the left wall (columns 2, 1, 0, 0, 1), so LEFT from 6, NOOP on 1 and
    # RIGHT from 0 (clamping at the wall instead would say NOOP / LEFT).
    ((None, _state(ball=(5, 2), trail=(4, 3), paddle=6)), LEFT),
    ((None, _state(ball=(5, 2), trail=(4, 3), paddle=1)), NOOP),
    ((None, _state(ball=(5, 2), trail=(4, 3), paddle=0)), RIGHT),
    # Falling down-right, no wall: lands on column 8.
    ((None, _state(ball=(6, 5), trail=(5, 4), paddle=8)), NOOP),
    ((None, _state(ball=(6, 5), trail=(5, 4), paddle=9)), LEFT),
    # Rising up-left from (7, 6): bounces off the bricks on row 3 at (4, 2),
    # then falls, via the left wall, to column 2.
    ((None, _state(ball=(6, 5), trail=(7, 6), paddle=5)), LEFT),
    ((None, _state(ball=(6, 5), trail=(7, 6), paddle=2)), NOOP),
    # Just bounced off the paddle (stepped onto its column): turned round,
    # rising up-left, lands on column 5 after the wall and a brick.
    ((None, _state(ball=(8, 4), trail=(8, 3), paddle=4)), RIGHT),
    # The ball went through a brick at (3, 5) (MinAtar lets it after a hit), so
    # the brick hides its trail now and the ball one step ago: direction from
    # the previous frame's trail (3, 6); falls down-left to column 0.
    ((_state(ball=(3, 5), trail=(3, 6), cleared=[(3, 6)]),
      _state(ball=(4, 4), trail=(3, 5), paddle=3, cleared=[(3, 6)])), LEFT),
    ((_state(ball=(3, 5), trail=(3, 6), cleared=[(3, 6)]),
      _state(ball=(4, 4), trail=(3, 5), paddle=0, cleared=[(3, 6)])), NOOP),
    # Start of an episode: the ball is hidden under a brick.
    ((None, _state(ball=(3, 0), trail=(3, 0), paddle=4)), NOOP),
]


def _case_observations():
  return [_observation(*[s for s in states if s is not None]) for states, _ in _CASES]


def test_scripted_minatar_policy_chooses_expected_actions(tmp_path):
  assert 'MinAtar-Breakout' in scripted.SCRIPTED_GAMES
  policy = scripted.make_scripted_policy('minatar:breakout')
  assert isinstance(policy, scripted.ScriptedMinAtarBreakoutPolicy)
  assert policy.action_spec == specs.action_spec(3)
  time_steps = _time_steps(_case_observations())
  expected = [action for _, action in _CASES]
  actions = policy.action(time_steps).action
  assert actions.dtype == tf.int64
  assert list(actions.numpy()) == expected
  # A SavedModel export takes the same decisions.
  loaded = tf.saved_model.load(
      scripted.export_scripted_policy('MinAtar/Breakout', str(tmp_path / 'policy')))
  assert list(loaded.action(time_steps).action.numpy()) == expected
  # Following the rising ball instead of predicting its bounce.
  follow = scripted.ScriptedMinAtarBreakoutPolicy(
      policy.time_step_spec, policy.action_spec, bounce_row=None)
  rising = _time_steps([_observation(_state(ball=(6, 5), trail=(7, 6), paddle=p))
                        for p in (4, 5, 6)])
  assert list(follow.action(rising).action.numpy()) == [RIGHT, NOOP, LEFT]
  # The option passes through make/export (bench/learning.py --scripted_aim=follow).
  assert list(scripted.make_scripted_policy('MinAtar-Breakout', bounce_row=None)
              .action(rising).action.numpy()) == [RIGHT, NOOP, LEFT]
  exported = tf.saved_model.load(scripted.export_scripted_policy(
      'MinAtar-Breakout', str(tmp_path / 'follow'), bounce_row=None))
  assert list(exported.action(rising).action.numpy()) == [RIGHT, NOOP, LEFT]
  # Bouncing back from row 2 (12 steps from row 8 to row 9). A sideways step
  # on row 8 onto the paddle's column turned the ball round (up-left: lands on
  # column 6); off it, the ball only rose (up-right: column 2).
  from_row_2 = scripted.ScriptedMinAtarBreakoutPolicy(
      policy.time_step_spec, policy.action_spec, bounce_row=2)
  bounced = _time_steps([_observation(_state(ball=(8, 5), trail=(8, 4), paddle=p))
                         for p in (5, 4)])
  assert list(from_row_2.action(bounced).action.numpy()) == [RIGHT, LEFT]


# MinAtar's ball directions: 0 up-left, 1 up-right, 2 down-right, 3 down-left.
_DIRECTIONS = {0: (-1, -1), 1: (-1, 1), 2: (1, 1), 3: (1, -1)}


@pytest.mark.parametrize('ball, direction', [
    ((5, 2), 3), ((5, 7), 2), ((6, 5), 0), ((7, 1), 1), ((7, 8), 0), ((2, 4), 3)])
def test_scripted_minatar_policy_aims_where_minatar_lands_the_ball(ball, direction):
  """The column the policy settles on (NOOP) is where MinAtar's ball reaches row 9."""
  env = minatar.make_minatar_env('MinAtar-Breakout', sticky_action_prob=0.0, seed=0)
  env.reset()
  game = env.minatar_env.env
  (game.ball_y, game.ball_x), game.ball_dir = ball, direction
  dy, dx = _DIRECTIONS[direction]
  game.last_y, game.last_x = ball[0] - dy, ball[1] - dx
  if ball[0] <= 3:                    # above the bricks: clear a way down
    game.brick_map[:, ball[1] - 1:ball[1] + 2] = 0
  observations = []
  for paddle in range(10):
    game.pos = paddle
    observations.append(_observation(game.state()))
  actions = list(scripted.make_scripted_policy('MinAtar-Breakout').action(
      _time_steps(observations)).action.numpy())
  target = actions.index(NOOP)
  assert actions == [RIGHT] * target + [NOOP] + [LEFT] * (9 - target)
  # Play it out with the paddle kept away from the ball (a bounce off a brick
  # on the way up is part of the prediction, row 3 here).
  terminal = False
  for _ in range(40):
    game.pos = (game.ball_x + 5) % 10
    _, terminal = game.act(0)
    if terminal:
      break
  assert terminal and game.ball_y == 9
  assert game.ball_x == target


def test_scripted_policy_names_and_action_sets():
  assert isinstance(scripted.make_scripted_policy('Breakout'),
                    scripted.ScriptedBreakoutPolicy)
  assert scripted.make_scripted_policy('Breakout').action_spec == specs.action_spec(4)
  with pytest.raises(ValueError, match='No scripted policy'):
    scripted.make_scripted_policy('MinAtar-Freeway')
  with pytest.raises(ValueError, match="'MinAtar-Pong'"):
    scripted.make_scripted_policy('MinAtar-Pong')
  with pytest.raises(ValueError, match='minimal action set'):
    scripted.make_scripted_policy('MinAtar-Breakout', action_spec=specs.action_spec(6))


def test_scripted_minatar_policy_beats_random_play():
  """5 episodes side by side with sticky actions 0.25 (random play: ~0.4)."""
  num_envs, cap = 5, 1000
  envs = [minatar.make_minatar_env('MinAtar-Breakout', sticky_action_prob=0.25,
                                   max_episode_frames=cap, seed=100 + i)
          for i in range(num_envs)]
  policy = scripted.make_scripted_policy('MinAtar-Breakout')
  act = tf.function(lambda observation: policy.action(ts.TimeStep(
      step_type=tf.fill([num_envs], ts.StepType.MID), reward=tf.zeros([num_envs]),
      discount=tf.ones([num_envs]), observation=observation)).action)
  observations = np.stack([env.reset().observation for env in envs])
  done = np.zeros(num_envs, bool)
  for _ in range(cap):
    actions = act(tf.constant(observations)).numpy()
    for i, env in enumerate(envs):
      if not done[i]:
        time_step = env.step(actions[i])
        observations[i] = time_step.observation
        done[i] = time_step.is_last()
    if done.all():
      break
  returns = [env.last_episode['return'] for env in envs]
  # Measured: about 15 per episode over 20 episodes (without the cap).
  assert np.mean(returns) > 2.0, returns
