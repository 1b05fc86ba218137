"""Continuous-control environments: specs, episode ends, actions, seeding, flattening, dispatch."""
import numpy as np
import pytest
from tf_agents.environments import utils as env_utils

from tf_offline_q.envs import continuous
from tf_offline_q.envs import games

# (name, obs_dim, act_dim)
EXPECTED = [
    ('Hopper-v5', 11, 3), ('Walker2d-v5', 17, 6), ('HalfCheetah-v5', 17, 6),
    ('PointMaze_UMaze-v3', 6, 2), ('PointMaze_UMazeDense-v3', 6, 2),
    ('PointMaze_Medium-v3', 6, 2), ('PointMaze_MediumDense-v3', 6, 2),
    ('PointMaze_Large-v3', 6, 2), ('PointMaze_LargeDense-v3', 6, 2),
    ('FetchPush-v4', 28, 4), ('FetchPickAndPlace-v4', 28, 4),
]


def test_every_name_is_expected():
  assert sorted(continuous.ENV_NAMES) == sorted(n for n, _, _ in EXPECTED)


@pytest.mark.parametrize('name,obs_dim,act_dim', EXPECTED)
def test_specs_through_make_env(name, obs_dim, act_dim):
  env = games.make_env(name, seed=0)
  assert isinstance(env, continuous.ContinuousEnvironment)
  assert env.name == env.game == name
  assert env.observation_spec().shape == (obs_dim,)
  assert env.observation_spec().dtype == np.float32
  spec = env.action_spec()
  assert spec.shape == (act_dim,) and spec.dtype == np.float32
  assert np.all(spec.minimum == -1.0) and np.all(spec.maximum == 1.0)
  time_step = env.reset()
  assert time_step.observation.dtype == np.float32
  assert time_step.observation.shape == (obs_dim,)
  time_step = env.step(np.zeros(act_dim, np.float32))
  assert time_step.reward.dtype == np.float32
  assert time_step.discount.dtype == np.float32
  env.close()


def test_validate_py_environment():
  env = continuous.make_continuous_env('PointMaze_UMaze-v3', seed=0,
                                       max_episode_steps=20)
  env_utils.validate_py_environment(env, episodes=2)


def test_aliases_and_unknown_names():
  assert games.canonical_game_name('hopper') == 'Hopper-v5'
  assert games.canonical_game_name('pointmaze-umaze-dense') == (
      'PointMaze_UMazeDense-v3')
  assert continuous.canonical_env_name('FETCH_PUSH') == 'FetchPush-v4'
  assert 'FetchPickAndPlace-v4' in games.valid_games()
  with pytest.raises(ValueError) as e:
    games.make_env('NoSuchEnv-v9')
  assert 'Hopper-v5' in str(e.value) and 'PointMaze_UMaze-v3' in str(e.value)
  assert 'Pong' in str(e.value) and 'MinAtar-Breakout' in str(e.value)
  with pytest.raises(ValueError, match='FetchPush-v4'):
    continuous.canonical_env_name('pong')


def test_atari_only_arguments_are_ignored():
  env = games.make_env('hopper', sticky_action_prob=0.0,
                       full_action_space=True, max_episode_frames=7,
                       stack_size=1, seed=3)
  assert env.observation_spec().shape == (11,)
  assert env.max_episode_steps == 1000   # max_episode_frames ignored


def test_terminal_is_discount_zero():
  env = continuous.make_continuous_env('Hopper-v5', seed=0)
  env.reset()
  for step in range(1, 1000):
    # Bending every joint fully topples the hopper quickly.
    time_step = env.step(np.ones(3, np.float32))
    if time_step.is_last():
      break
  assert time_step.is_last() and step < 1000
  assert time_step.discount == 0.0
  assert env.last_episode['truncated'] is False
  assert env.last_episode['steps'] == step
  assert env.step(np.zeros(3, np.float32)).is_first()   # auto-reset


def test_time_limit_is_truncation_with_discount_one():
  env = continuous.make_continuous_env('PointMaze_UMaze-v3', seed=0,
                                       max_episode_steps=5)
  env.reset()
  steps = [env.step(np.zeros(2, np.float32)) for _ in range(5)]
  assert [s.is_last() for s in steps] == [False] * 4 + [True]
  assert all(s.discount == 1.0 for s in steps)
  assert env.last_episode['truncated'] is True
  assert env.step(np.zeros(2, np.float32)).is_first()


def test_registered_time_limits():
  assert continuous.make_continuous_env('PointMaze_Medium-v3').max_episode_steps == 600
  assert continuous.make_continuous_env('FetchPush-v4').max_episode_steps == 50


def test_rescale_action():
  low, high = np.array([0.0, -2.0, 10.0]), np.array([2.0, 2.0, 11.0])
  np.testing.assert_allclose(
      continuous.rescale_action(np.array([-1.0, 0.0, 1.0]), low, high),
      [0.0, 0.0, 11.0])
  np.testing.assert_allclose(
      continuous.rescale_action(np.array([0.0, 0.5, -0.5]), low, high),
      [1.0, 1.0, 10.25])


def test_actions_checked_and_clipped():
  env = continuous.make_continuous_env('PointMaze_UMaze-v3', seed=0)
  env.reset()
  np.testing.assert_array_equal(env.to_env_action([3.0, -0.5]), [1.0, -0.5])
  with pytest.raises(ValueError, match='PointMaze_UMaze-v3.*shape'):
    env.step(np.zeros(3, np.float32))
  with pytest.raises(ValueError, match='NaN'):
    env.step(np.array([np.nan, 0.0], np.float32))


def _trajectory(env, actions):
  observations = [env.reset().observation]
  for a in actions:
    observations.append(env.step(a).observation)
  return np.stack(observations)


@pytest.mark.parametrize('name', ['Hopper-v5', 'PointMaze_UMaze-v3',
                                  'FetchPush-v4'])
def test_seeding(name):
  env = continuous.make_continuous_env(name, seed=5)
  actions = np.random.default_rng(0).uniform(
      -1, 1, (5,) + env.action_spec().shape).astype(np.float32)
  a = _trajectory(env, actions)
  b = _trajectory(continuous.make_continuous_env(name, seed=5), actions)
  np.testing.assert_array_equal(a, b)
  c = _trajectory(continuous.make_continuous_env(name, seed=6), actions)
  assert not np.array_equal(a, c)
  # seed() re-seeds at the next reset.
  env.seed(5)
  np.testing.assert_array_equal(_trajectory(env, actions), a)
  # Later resets continue the stream: a second episode starts elsewhere.
  assert not np.array_equal(env.reset().observation, a[0])


def test_maze_flatten_order():
  env = continuous.make_continuous_env('PointMaze_Medium-v3', seed=1)
  observation = env.reset().observation
  inner = env.gym_env.unwrapped
  np.testing.assert_allclose(observation[4:6], inner.goal, rtol=1e-6)
  time_step = env.step(np.array([0.5, -0.5], np.float32))
  qpos = inner.point_env.data.qpos
  qvel = inner.point_env.data.qvel
  np.testing.assert_allclose(time_step.observation[0:2], qpos[:2], rtol=1e-5)
  np.testing.assert_allclose(time_step.observation[2:4], qvel[:2], rtol=1e-5)
  np.testing.assert_allclose(time_step.observation[4:6], inner.goal, rtol=1e-6)
  assert continuous.FLATTEN_ORDER == ('observation', 'desired_goal')


def test_fetch_flatten_order_and_reward():
  env = continuous.make_continuous_env('FetchPush-v4', seed=2)
  observation = env.reset().observation
  inner = env.gym_env.unwrapped
  np.testing.assert_allclose(observation[25:28], inner.goal, rtol=1e-6)
  # achieved_goal (the object position) is observation[3:6].
  obj = inner._utils.get_site_xpos(inner.model, inner.data, 'object0')  # pylint: disable=protected-access
  np.testing.assert_allclose(observation[3:6], obj, rtol=1e-5)
  time_step = env.step(np.zeros(4, np.float32))
  assert time_step.reward == 0.0          # gymnasium-robotics says -1 here
  assert time_step.discount == 1.0


def test_dense_maze_reward_is_dense():
  env = continuous.make_continuous_env('PointMaze_UMazeDense-v3', seed=0)
  env.reset()
  reward = env.step(np.zeros(2, np.float32)).reward
  assert 0.0 < reward < 1.0   # exp(-distance)
