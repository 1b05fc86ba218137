"""Tests of the Atari PyEnvironment: specs, preprocessing, episode ends, drivers."""
import cv2
import numpy as np
import pytest
from tf_agents.drivers import py_driver
from tf_agents.metrics import py_metrics
from tf_agents.policies import random_py_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q import specs
from tf_offline_q.envs import atari

# Full-action-set indices (ALE legal set order). Pong's paddle moves with
# RIGHT (up) and LEFT (down).
NOOP, FIRE, RIGHT, LEFT = 0, 1, 3, 4


@pytest.fixture(scope='module')
def pong():
  env = atari.make_atari_env('Pong', seed=0)
  yield env
  env.close()


def test_game_names():
  assert atari.GAMES == ('Asterix', 'Breakout', 'Pong', 'Qbert', 'Seaquest')
  assert atari.canonical_game_name('pong') == 'Pong'
  assert atari.canonical_game_name('QBERT') == 'Qbert'
  assert atari.canonical_game_name('space_invaders') == 'SpaceInvaders'
  assert atari.canonical_game_name('ALE/MsPacman-v5') == 'MsPacman'
  for game in atari.GAMES:
    assert atari.canonical_game_name(game.lower()) == game
  assert 'Seaquest' in atari.valid_games()


def test_unknown_game_error_names_it_and_lists_games():
  with pytest.raises(ValueError) as error:
    atari.canonical_game_name('Pongg')
  message = str(error.value)
  assert "'Pongg'" in message
  for game in atari.GAMES + ('SpaceInvaders',):
    assert game in message
  with pytest.raises(ValueError, match='NotAGame'):
    atari.make_atari_env('NotAGame')


def test_specs_match_shared_specs(pong):
  assert pong.observation_spec() == tensor_spec.to_array_spec(
      specs.observation_spec())
  assert pong.action_spec() == tensor_spec.to_array_spec(specs.action_spec(18))
  assert pong.action_spec().dtype == np.int64
  assert pong.num_actions == 18 and pong.game == 'Pong'


def test_time_step_shapes_and_dtypes(pong):
  first = pong.reset()
  assert first.step_type == ts.StepType.FIRST
  mid = pong.step(np.int64(NOOP))
  for time_step in (first, mid):
    assert time_step.observation.shape == (84, 84, 4)
    assert time_step.observation.dtype == np.uint8
    assert time_step.reward.dtype == np.float32 and time_step.reward.shape == ()
    assert time_step.discount.dtype == np.float32
    assert time_step.step_type.dtype == np.int32
  assert mid.step_type == ts.StepType.MID and mid.discount == 1.0
  # The TF-Agents spec checker agrees.
  assert np.all(pong.time_step_spec().observation.check_array(mid.observation))


def test_reset_stack_is_zeros_except_newest_frame(pong):
  observation = pong.reset().observation
  assert np.all(observation[..., :3] == 0)
  assert observation[..., 3].max() > 0


def test_frame_stack_order_newest_last(pong):
  previous = pong.reset().observation
  for i in range(12):
    observation = pong.step(np.int64(RIGHT if i % 2 else LEFT)).observation
    # Shifted by one: what was newest is now second newest, oldest dropped.
    np.testing.assert_array_equal(observation[..., :3], previous[..., 1:])
    previous = observation
  # After >= 4 steps no zero padding is left.
  assert all(previous[..., k].max() > 0 for k in range(4))


@pytest.mark.parametrize('stack_size', [2, 3])
def test_other_stack_sizes(stack_size):
  env = atari.make_atari_env('Pong', stack_size=stack_size, seed=0)
  try:
    previous = env.reset().observation
    assert previous.shape == (84, 84, stack_size)
    assert np.all(previous[..., :-1] == 0)
    for i in range(6):
      observation = env.step(np.int64(RIGHT if i % 2 else LEFT)).observation
      np.testing.assert_array_equal(observation[..., :-1], previous[..., 1:])
      previous = observation
  finally:
    env.close()


def test_newest_frame_is_max_pool_of_last_two_raw_frames():
  """Replays each step by hand from a cloned ALE state and compares."""
  env = atari.make_atari_env('Breakout', sticky_action_prob=0.0, seed=1)
  try:
    env.reset()
    ale = env.ale
    actions = [FIRE] + [RIGHT, LEFT] * 20
    pooling_mattered = 0
    for action in actions:
      state = ale.cloneState()
      ale_action = env.gym_env.unwrapped._action_set[action]  # pylint: disable=protected-access
      screens = []
      for t in range(4):
        ale.act(ale_action)
        if t >= 2:
          screens.append(ale.getScreenGrayscale())
      pooled = cv2.resize(np.maximum(screens[0], screens[1]), (84, 84),
                          interpolation=cv2.INTER_AREA)
      last_only = cv2.resize(screens[1], (84, 84), interpolation=cv2.INTER_AREA)
      ale.restoreState(state)
      observation = env.step(np.int64(action)).observation
      np.testing.assert_array_equal(observation[..., -1], pooled)
      pooling_mattered += int(np.any(pooled != last_only))
    # Breakout's ball/paddle move between frames: the max-pool is visible.
    assert pooling_mattered > 0
  finally:
    env.close()


def test_full_and_minimal_action_sets():
  env = atari.make_atari_env('Pong', full_action_space=False, seed=0)
  try:
    assert env.num_actions == 6
    assert env.action_spec().maximum == 5
  finally:
    env.close()


def test_sticky_actions_configured_in_ale(pong):
  assert pong.ale.getFloat('repeat_action_probability') == pytest.approx(0.25)
  assert pong.sticky_action_prob == 0.25


def _observations(env, actions):
  env.reset()
  return np.stack([env.step(np.int64(a)).observation for a in actions])


def test_sticky_actions_take_effect():
  """Probability 1 repeats the initial NOOP forever: actions have no effect."""
  actions = [RIGHT] * 30 + [LEFT] * 30
  always = atari.make_atari_env('Pong', sticky_action_prob=1.0, seed=0)
  never = atari.make_atari_env('Pong', sticky_action_prob=0.0, seed=0)
  never_noop = atari.make_atari_env('Pong', sticky_action_prob=0.0, seed=0)
  try:
    assert always.ale.getFloat('repeat_action_probability') == 1.0
    moved = _observations(always, actions)
    noop = _observations(never_noop, [NOOP] * len(actions))
    np.testing.assert_array_equal(moved, noop)
    # Sanity: without stickiness the same actions do move the paddle.
    assert np.any(_observations(never, actions) != noop)
  finally:
    for env in (always, never, never_noop):
      env.close()


def test_seeded_envs_are_reproducible():
  actions = np.random.RandomState(3).randint(18, size=60)
  a = atari.make_atari_env('Breakout', seed=7)
  b = atari.make_atari_env('Breakout', seed=7)
  try:
    np.testing.assert_array_equal(_observations(a, actions),
                                  _observations(b, actions))
  finally:
    a.close()
    b.close()


def test_game_over_is_terminal_with_discount_zero():
  env = atari.make_atari_env('Breakout', seed=0)
  rng = np.random.RandomState(0)
  try:
    time_step = env.reset()
    total = 0.0
    for _ in range(5000):
      time_step = env.step(np.int64(rng.randint(18)))
      total += float(time_step.reward)
      if time_step.is_last():
        break
    assert time_step.is_last()
    assert time_step.discount == 0.0
    assert env.ale.game_over()
    last = env.last_episode
    assert last['truncated'] is False
    assert last['return'] == pytest.approx(total)
    assert env.episode_return == pytest.approx(total)
    assert last['frames'] <= 4 * last['steps']
    # The next step starts a new episode, ignoring the action.
    restart = env.step(np.int64(0))
    assert restart.is_first()
    assert np.all(restart.observation[..., :3] == 0)
    assert env.episode_steps == 0 and env.num_episodes == 1
  finally:
    env.close()


def test_truncation_at_max_episode_frames():
  env = atari.make_atari_env('Pong', max_episode_frames=50, seed=0)
  try:
    env.reset()
    step_types = []
    time_step = None
    for _ in range(13):  # ceil(50 / 4) agent steps
      time_step = env.step(np.int64(NOOP))
      step_types.append(int(time_step.step_type))
    assert step_types[:-1] == [ts.StepType.MID] * 12
    assert time_step.is_last()
    assert time_step.discount == 1.0  # truncation, not termination
    assert not env.ale.game_over()
    assert env.last_episode['truncated'] is True
    assert env.last_episode['frames'] == 52
    assert env.step(np.int64(NOOP)).is_first()
  finally:
    env.close()


def test_invalid_action_raises(pong):
  pong.reset()
  with pytest.raises(ValueError, match=r'\[0, 18\)'):
    pong.step(np.int64(18))
  with pytest.raises(ValueError, match='Pong'):
    pong.step(np.int64(-1))


def test_random_policy_in_py_driver_with_metrics():
  env = atari.make_atari_env('Pong', max_episode_frames=200, seed=0)
  policy = random_py_policy.RandomPyPolicy(
      env.time_step_spec(), env.action_spec(), seed=0)
  average_return = py_metrics.AverageReturnMetric()
  num_episodes = py_metrics.NumberOfEpisodes()
  env_steps = py_metrics.EnvironmentSteps()
  episode_returns = []

  def record_episode_end(traj):
    if traj.is_last():
      episode_returns.append(env.last_episode['return'])

  driver = py_driver.PyDriver(
      env, policy,
      observers=[average_return, num_episodes, env_steps, record_episode_end],
      max_episodes=3)
  try:
    driver.run(env.reset())
    assert num_episodes.result() == 3
    assert env_steps.result() == 3 * 50  # 200 frames / frame_skip 4
    assert len(episode_returns) == 3
    assert average_return.result() == pytest.approx(np.mean(episode_returns))
  finally:
    env.close()
