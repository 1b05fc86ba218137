"""The maze planner + PD controller and the scripted Fetch policies."""
import numpy as np
import pytest

from tf_offline_q.data import generation
from tf_offline_q.envs import continuous
from tf_offline_q.envs import fetch_scripted
from tf_offline_q.envs import maze_planner

UMAZE = [[1, 1, 1, 1, 1],
         [1, 0, 0, 0, 1],
         [1, 1, 1, 0, 1],
         [1, 0, 0, 0, 1],
         [1, 1, 1, 1, 1]]


def test_bfs_path_goes_around_the_wall():
  planner = maze_planner.MazePlanner(UMAZE)
  assert planner.path((1, 1), (3, 1)) == [
      (1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]
  assert planner.distances((3, 1))[1, 1] == 6
  with pytest.raises(ValueError, match='wall'):
    planner.path((1, 1), (2, 1))


def test_cells_match_gymnasium_robotics():
  env = continuous.make_continuous_env('PointMaze_Large-v3', seed=0)
  planner = maze_planner.MazePlanner.for_env(env)
  maze = env.gym_env.unwrapped.maze
  for cell in planner.free_cells:
    np.testing.assert_allclose(planner.center(cell),
                               maze.cell_rowcol_to_xy(np.array(cell)))
    assert planner.cell(planner.center(cell) + 0.3) == tuple(
        maze.cell_xy_to_rowcol(planner.center(cell) + 0.3))


def test_controller_reaches_goals_on_umaze():
  env = continuous.make_continuous_env('PointMaze_UMaze-v3', seed=0)
  controller = maze_planner.WaypointController(
      maze_planner.MazePlanner.for_env(env))
  for _ in range(3):
    _, info = generation.rollout(env, controller)
    assert info['success']
    assert info['return'] > 150   # at the goal for most of the 300 steps


def test_noisy_controller_goes_from_goal_to_goal():
  env = continuous.make_continuous_env('PointMaze_UMaze-v3', seed=1)
  controller = maze_planner.WaypointController(
      maze_planner.MazePlanner.for_env(env), action_noise=0.5,
      rng=np.random.default_rng(0))
  relay = maze_planner.GoalRelay(env, threshold=0.1)
  episode, info = generation.rollout(env, controller, after_step=relay)
  assert episode.length == 300 and info['truncated']
  goals = episode.observations[:, 4:6]
  assert relay.num_goals_reached >= 2
  assert len({tuple(np.round(g, 3)) for g in goals}) == relay.num_goals_reached + 1
  # The data's reward is the evaluation's: 1 on every step that ends within
  # 0.45 of the goal the step was driving to (the goal in its observation),
  # so a goal is worth several steps, not one.
  distance = np.linalg.norm(episode.observations[1:, 0:2] - goals[:-1], axis=1)
  np.testing.assert_array_equal(episode.rewards, (distance <= 0.45).astype(np.float32))
  assert episode.rewards.sum() > 2 * relay.num_goals_reached
  # A new goal is drawn only once the point is within the threshold.
  switched = np.flatnonzero(np.any(goals[1:] != goals[:-1], axis=1))
  assert np.all(np.linalg.norm(episode.observations[switched + 1, 0:2]
                               - goals[switched], axis=1) <= 0.1)


@pytest.mark.parametrize('name', continuous.FETCH_ENVS)
def test_fetch_script_succeeds(name):
  env = continuous.make_continuous_env(name, seed=11)
  policy = fetch_scripted.scripted_policy(name)
  for _ in range(4):
    episode, info = generation.rollout(env, policy)
    assert info['success'] and info['return'] == 1.0
    # Success ends the episode: a terminal step with reward 1, discount 0.
    assert episode.terminations[-1] and not episode.truncations[-1]
    assert episode.rewards[-1] == 1.0 and episode.rewards[:-1].sum() == 0.0
    assert episode.length < 50


def test_fetch_without_terminate_on_success_continues():
  env = continuous.make_continuous_env('FetchPush-v4', seed=11,
                                       terminate_on_success=False)
  _, info = generation.rollout(env, fetch_scripted.scripted_policy('FetchPush'))
  assert info['truncated'] and info['steps'] == 50
  assert info['return'] > 1.0   # reward 1 on every successful step


def test_noisy_fetch_script_mostly_fails():
  env = continuous.make_continuous_env('FetchPickAndPlace-v4', seed=0)
  policy = fetch_scripted.scripted_policy('FetchPickAndPlace-v4', noise=1.0,
                                          random_action_prob=0.6,
                                          rng=np.random.default_rng(0))
  result = generation.average_return(env, policy, 6)
  assert result['success_rate'] <= 0.5


def test_no_script_for_other_envs():
  with pytest.raises(ValueError, match='FetchPush-v4'):
    fetch_scripted.scripted_policy('Hopper-v5')
  with pytest.raises(ValueError, match='terminate_on_success'):
    continuous.make_continuous_env('Hopper-v5', terminate_on_success=True)
