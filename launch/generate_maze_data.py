r"""Makes a D4RL-style maze2d dataset for a PointMaze environment, as a Minari dataset.

Procedure (D4RL's maze2d; `tf_offline_q.envs.maze_planner`): a planner over the
maze grid and a PD controller drive the point mass to the waypoints of a
randomly chosen goal; once the point is within `--goal_threshold` of the goal
(D4RL's controller threshold, 0.1) a new goal is drawn
(`maze_planner.GoalRelay`) and the drive continues, from goal to goal, until
the episode's time limit (UMaze 300, Medium 600, Large 800 steps: a
truncation). Gaussian noise (`--action_noise`, D4RL's 0.5) is added to every
action. The observation holds the goal being driven to (x, y, vx, vy, goal_x,
goal_y) and the reward is the evaluation environment's for that goal (sparse:
1 on every step within 0.45 of it, as D4RL's 0.5; Dense: exp(-distance)), so
dataset returns and evaluation returns count the same thing: steps at the
goal. (Gymnasium-Robotics' own `reset_target=True`, which Minari's maze
datasets use, draws the new goal on the first step within 0.45, so its data
reward counts goals reached, 1 each, while evaluation counts steps at the
goal: returns-to-go in the data would be on another scale than the returns a
Decision Transformer is asked for.)

Reference scores (stored as Minari's ref_min_score / ref_max_score): mean
returns over `--ref_episodes` episodes of the *evaluation* environment
(`make_env(name)`: one random goal per episode, kept; sparse reward 1 per step
at the goal) of a uniformly random policy and of the planner + controller
without noise (the "expert", as D4RL's maze2d references).

Generation is in chunks of `--episodes_per_chunk` episodes under
`--work_dir` (default ROOT/.work/DATASET_ID); a rerun with the same flags
resumes, then writes ROOT/DATASET_ID.

Example:
  python launch/generate_maze_data.py --root=/tmp/minari \
      --env=PointMaze_UMaze-v3 --num_steps=100000
"""
import json
import math
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_offline_q import cli  # pylint: disable=g-import-not-at-top
from tf_offline_q import console
from tf_offline_q import progress as progress_lib
from tf_offline_q.data import generation
from tf_offline_q.data import minari_data
from tf_offline_q.envs import continuous
from tf_offline_q.envs import maze_planner

flags.DEFINE_string('root', None, 'Minari datasets root (the dataset goes to '
                    'ROOT/DATASET_ID).')
flags.DEFINE_string('env', 'PointMaze_UMaze-v3', 'A PointMaze environment '
                    f'({", ".join(continuous.MAZE_ENVS)}).')
flags.DEFINE_string('dataset_id', None, "Minari id; default 'pointmaze/"
                    "{umaze,medium,large}[-dense]-v0'.")
flags.DEFINE_integer('num_steps', 1_000_000, 'Steps to generate (rounded up to '
                     'whole episodes). D4RL: UMaze 1M, Medium 2M, Large 4M.')
flags.DEFINE_float('action_noise', 0.5, 'Std of Gaussian action noise (D4RL 0.5).')
flags.DEFINE_float('p_gain', 10.0, 'PD controller proportional gain (D4RL 10).')
flags.DEFINE_float('d_gain', 1.0, 'PD controller velocity damping (D4RL 1).')
flags.DEFINE_float('goal_threshold', 0.1, 'Distance to the goal at which the next goal is '
                   'drawn (D4RL 0.1; must be below the reward radius 0.45).')
flags.DEFINE_integer('ref_episodes', 100, 'Episodes for each reference score.')
flags.DEFINE_integer('episodes_per_chunk', 100, 'Episodes per resumable chunk.')
flags.DEFINE_string('work_dir', None, 'Chunk directory (default ROOT/.work/'
                    'DATASET_ID); deleted after the dataset is written.')
flags.DEFINE_bool('keep_work_dir', False, 'Keep the chunks after writing.')
flags.DEFINE_integer('seed', 0, 'Seed of everything.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing dataset.')

FLAGS = flags.FLAGS


def default_dataset_id(env_name: str) -> str:
  """'PointMaze_MediumDense-v3' -> 'pointmaze/medium-dense-v0'."""
  size = env_name[len('PointMaze_'):].split('-')[0]
  dense = size.endswith('Dense')
  size = size[:-len('Dense')] if dense else size
  return f'pointmaze/{size.lower()}{"-dense" if dense else ""}-v0'


def reference_scores(env_name, num_episodes, seed, p_gain, d_gain):
  """Random and expert (noise-free controller) returns on the evaluation env."""
  env = continuous.make_continuous_env(env_name, seed=seed)
  random_policy = generation.uniform_random_policy(
      2, np.random.default_rng(seed))
  random = generation.average_return(env, random_policy, num_episodes)
  env.seed(seed + 1)
  expert_policy = maze_planner.WaypointController(
      maze_planner.MazePlanner.for_env(env), p_gain, d_gain)
  expert = generation.average_return(env, expert_policy, num_episodes)
  env.close()
  return random, expert


def generate(root, env_name, dataset_id=None, num_steps=1_000_000,
             action_noise=0.5, p_gain=10.0, d_gain=1.0, ref_episodes=100,
             episodes_per_chunk=100, work_dir=None, keep_work_dir=False,
             seed=0, overwrite=False, progress_interval=10.0,
             goal_threshold=0.1):
  """Generates the dataset (module docstring); returns (path, summary dict)."""
  env_name = continuous.canonical_env_name(env_name)
  if continuous.env_family(env_name) != 'maze':
    raise ValueError(f'--env must be a PointMaze environment '
                     f'({", ".join(continuous.MAZE_ENVS)}), got {env_name}')
  dataset_id = dataset_id or default_dataset_id(env_name)
  final = minari_data.dataset_path(root, dataset_id)
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f'{final} exists; pass --overwrite to replace it')
  if not 0.0 < goal_threshold < 0.45:
    raise ValueError(f'--goal_threshold must be in (0, 0.45) (the reward radius), '
                     f'got {goal_threshold}')
  env = continuous.make_continuous_env(env_name, seed=seed)
  steps_per_episode = env.max_episode_steps
  num_episodes = max(1, math.ceil(num_steps / steps_per_episode))
  num_chunks = math.ceil(num_episodes / episodes_per_chunk)
  work_dir = work_dir or os.path.join(root, '.work', dataset_id)
  config = dict(env=env_name, dataset_id=dataset_id, num_episodes=num_episodes,
                action_noise=action_noise, p_gain=p_gain, d_gain=d_gain,
                goal_threshold=goal_threshold, ref_episodes=ref_episodes,
                episodes_per_chunk=episodes_per_chunk, seed=seed)
  chunks = generation.EpisodeChunks(work_dir, num_chunks, config)
  planner = maze_planner.MazePlanner.for_env(env)
  total_steps = num_episodes * steps_per_episode
  done_chunks = num_chunks - len(chunks.missing())
  done = sum(min(episodes_per_chunk, num_episodes - i * episodes_per_chunk)
             for i in range(num_chunks) if chunks.is_done(i)) * steps_per_episode
  progress = progress_lib.Progress(f'maze {env_name}', total_steps, 'steps',
                                   interval=progress_interval, start=done)
  if done_chunks:
    print(f'Resuming: {done_chunks}/{num_chunks} chunks already in {work_dir}')
  for index in chunks.missing():
    chunk_seed = seed * 100_003 + index
    env.seed(chunk_seed)
    controller = maze_planner.WaypointController(
        planner, p_gain, d_gain, action_noise,
        np.random.default_rng(chunk_seed))
    relay = maze_planner.GoalRelay(env, goal_threshold)
    count = min(episodes_per_chunk, num_episodes - index * episodes_per_chunk)
    episodes = []
    for _ in range(count):
      episode, _ = generation.rollout(env, controller, after_step=relay)
      episodes.append(episode)
      progress.update(episode.length)
    chunks.save(index, episodes)
  env.close()
  progress.done()

  refs_path = os.path.join(work_dir, 'reference_scores.json')
  if os.path.exists(refs_path):
    with open(refs_path) as f:
      refs = json.load(f)
  else:
    start = time.time()
    random, expert = reference_scores(env_name, ref_episodes, seed + 7_919,
                                      p_gain, d_gain)
    refs = {'random': random, 'expert': expert}
    from tf_offline_q import files  # pylint: disable=g-import-not-at-top
    files.atomic_write_text(refs_path, json.dumps(refs, indent=2) + '\n')
    print(f'Reference scores ({2 * ref_episodes} episodes, '
          f'{time.time() - start:.0f}s): random {random["mean_return"]:.2f} '
          f'+- {random["stderr"]:.2f}, expert {expert["mean_return"]:.2f} '
          f'+- {expert["stderr"]:.2f}')
  episodes, _ = chunks.load_all()
  returns = np.array([e.episode_return for e in episodes])
  summary = dict(
      dataset_id=dataset_id, env=env_name, episodes=len(episodes),
      steps=int(sum(e.length for e in episodes)),
      data_mean_return=float(returns.mean()),
      ref_min_score=refs['random']['mean_return'],
      ref_max_score=refs['expert']['mean_return'],
      random=refs['random'], expert=refs['expert'])
  path = minari_data.write_minari_dataset(
      root, dataset_id, episodes, env_name,
      ref_min_score=summary['ref_min_score'],
      ref_max_score=summary['ref_max_score'],
      algorithm_name='maze2d planner (BFS) + PD controller, goal to goal',
      description=(
          f'D4RL maze2d-style data for {env_name}: BFS planner waypoints + PD '
          f'controller (p {p_gain}, d {d_gain}), Gaussian action noise '
          f'{action_noise}, a new random goal once within {goal_threshold} '
          'of the goal; sparse reward 1 per step within 0.45 of the goal. '
          'Reference scores: uniform random and noise-free controller on the '
          'evaluation env.'),
      extra_metadata={'generator': 'launch/generate_maze_data.py',
                      'config': config, 'reference': refs},
      overwrite=overwrite)
  if not keep_work_dir:
    generation.remove_work_dir(work_dir, root)
  return path, summary


def main(argv):
  del argv
  if not FLAGS.root:
    raise app.UsageError('--root is required')
  console.quiet_third_party()
  start = time.time()
  with cli.user_errors('generate_maze_data.py'):
    path, summary = generate(
        FLAGS.root, FLAGS.env, FLAGS.dataset_id, FLAGS.num_steps,
        FLAGS.action_noise, FLAGS.p_gain, FLAGS.d_gain, FLAGS.ref_episodes,
        FLAGS.episodes_per_chunk, FLAGS.work_dir, FLAGS.keep_work_dir,
        FLAGS.seed, FLAGS.overwrite, goal_threshold=FLAGS.goal_threshold)
  print(f'Wrote {summary["steps"]:,} steps ({summary["episodes"]} episodes) '
        f'of {summary["env"]} to {path} in {time.time() - start:.0f}s')
  print(f'  data mean episode return {summary["data_mean_return"]:.2f}; '
        f'ref_min_score (random) {summary["ref_min_score"]:.2f}, '
        f'ref_max_score (planner, no noise) {summary["ref_max_score"]:.2f}')
  print(f'  source: minari:{os.path.abspath(FLAGS.root)}:{summary["dataset_id"]}')


if __name__ == '__main__':
  app.run(main)
