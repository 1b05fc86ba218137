r"""Makes a Q-Transformer-style Fetch dataset: scripted demonstrations plus noisy autonomous episodes.

Q-Transformer's data regime (Chebotar et al., 2023): a few successful
demonstrations plus many failed autonomous episodes, with a sparse reward of 1
on success. Here, on `FetchPush-v4` or `FetchPickAndPlace-v4`
(`tf_offline_q.envs.continuous`: reward 1.0 on success, else 0.0; the first
success ends the episode as a terminal step, so a return is 0 or 1):

  * `--num_demos` demonstrations by the scripted policy
    (`tf_offline_q.envs.fetch_scripted`) with `--demo_noise` Gaussian action
    noise; only successful ones are kept (`--demo_successes_only`), the
    attempts needed are reported;
  * `--num_autonomous` autonomous episodes: the same script with
    `--autonomous_noise` Gaussian noise and, with probability
    `--autonomous_random_prob` per step, a uniform random action. They mostly
    fail (the success rate is measured and printed).

Reference scores (Minari's ref_min_score / ref_max_score) are the mean returns
(= success rates) over `--ref_episodes` fresh episodes of a uniformly random
policy and of the noise-free script.

Generation is in chunks under `--work_dir` (default ROOT/.work/DATASET_ID); a
rerun with the same flags resumes.

Example:
  python launch/generate_fetch_data.py --root=/tmp/minari --env=FetchPush-v4 \
      --num_demos=100 --num_autonomous=900
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_offline_q import cli  # pylint: disable=g-import-not-at-top
from tf_offline_q import console
from tf_offline_q import files
from tf_offline_q import progress as progress_lib
from tf_offline_q.data import generation
from tf_offline_q.data import minari_data
from tf_offline_q.envs import continuous
from tf_offline_q.envs import fetch_scripted

flags.DEFINE_string('root', None, 'Minari datasets root (the dataset goes to '
                    'ROOT/DATASET_ID).')
flags.DEFINE_enum('env', 'FetchPush-v4', list(continuous.FETCH_ENVS),
                  'Fetch environment.')
flags.DEFINE_string('dataset_id', None, "Minari id; default 'fetch/"
                    "{push,pickandplace}-mixed-v0'.")
flags.DEFINE_integer('num_demos', 100, 'Scripted demonstrations to keep.')
flags.DEFINE_float('demo_noise', 0.1, 'Std of Gaussian noise on demo actions.')
flags.DEFINE_bool('demo_successes_only', True, 'Keep successful demos only.')
flags.DEFINE_integer('num_autonomous', 900, 'Noisy autonomous episodes.')
flags.DEFINE_float('autonomous_noise', 1.0, 'Std of Gaussian noise on '
                   'autonomous actions.')
flags.DEFINE_float('autonomous_random_prob', 0.6, 'Per-step probability of a '
                   'uniform random action in autonomous episodes.')
flags.DEFINE_integer('ref_episodes', 100, 'Episodes for each reference score.')
flags.DEFINE_integer('episodes_per_chunk', 100, 'Episodes per resumable chunk.')
flags.DEFINE_string('work_dir', None, 'Chunk directory (default ROOT/.work/'
                    'DATASET_ID); deleted after the dataset is written.')
flags.DEFINE_bool('keep_work_dir', False, 'Keep the chunks after writing.')
flags.DEFINE_integer('seed', 0, 'Seed of everything.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing dataset.')

FLAGS = flags.FLAGS

# Attempts allowed per kept demonstration before giving up.
MAX_DEMO_ATTEMPTS_FACTOR = 5


def default_dataset_id(env_name: str) -> str:
  """'FetchPickAndPlace-v4' -> 'fetch/pickandplace-mixed-v0'."""
  task = env_name[len('Fetch'):].split('-')[0].lower()
  return f'fetch/{task}-mixed-v0'


def reference_scores(env_name, num_episodes, seed):
  """Random and noise-free scripted returns (success rates)."""
  env = continuous.make_continuous_env(env_name, seed=seed)
  random = generation.average_return(
      env, generation.uniform_random_policy(4, np.random.default_rng(seed)),
      num_episodes)
  env.seed(seed + 1)
  scripted = generation.average_return(
      env, fetch_scripted.scripted_policy(env_name), num_episodes)
  env.close()
  return random, scripted


def _chunk_plan(num_demos, num_autonomous, episodes_per_chunk):
  """[(kind, count)] per chunk: demonstrations first, then autonomous."""
  plan = []
  for kind, total in (('demo', num_demos), ('autonomous', num_autonomous)):
    for start in range(0, total, episodes_per_chunk):
      plan.append((kind, min(episodes_per_chunk, total - start)))
  return plan


def generate(root, env_name, dataset_id=None, num_demos=100, demo_noise=0.1,
             demo_successes_only=True, num_autonomous=900,
             autonomous_noise=1.0, autonomous_random_prob=0.6,
             ref_episodes=100, episodes_per_chunk=100, work_dir=None,
             keep_work_dir=False, seed=0, overwrite=False,
             progress_interval=10.0):
  """Generates the dataset (module docstring); returns (path, summary dict)."""
  env_name = continuous.canonical_env_name(env_name)
  if continuous.env_family(env_name) != 'fetch':
    raise ValueError(f'env must be one of {", ".join(continuous.FETCH_ENVS)}, '
                     f'got {env_name}')
  if num_demos + num_autonomous < 1:
    raise ValueError('num_demos + num_autonomous must be >= 1')
  dataset_id = dataset_id or default_dataset_id(env_name)
  final = minari_data.dataset_path(root, dataset_id)
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f'{final} exists; pass --overwrite to replace it')
  work_dir = work_dir or os.path.join(root, '.work', dataset_id)
  config = dict(env=env_name, dataset_id=dataset_id, num_demos=num_demos,
                demo_noise=demo_noise, demo_successes_only=demo_successes_only,
                num_autonomous=num_autonomous,
                autonomous_noise=autonomous_noise,
                autonomous_random_prob=autonomous_random_prob,
                ref_episodes=ref_episodes,
                episodes_per_chunk=episodes_per_chunk, seed=seed)
  plan = _chunk_plan(num_demos, num_autonomous, episodes_per_chunk)
  chunks = generation.EpisodeChunks(work_dir, len(plan), config)
  total = num_demos + num_autonomous
  done = sum(count for i, (_, count) in enumerate(plan) if chunks.is_done(i))
  if done:
    print(f'Resuming: {done}/{total} episodes already in {work_dir}')
  progress = progress_lib.Progress(f'fetch {env_name}', total, 'episodes',
                                   interval=progress_interval, start=done)
  env = continuous.make_continuous_env(env_name, seed=seed)
  for index in chunks.missing():
    kind, count = plan[index]
    chunk_seed = seed * 100_003 + index
    env.seed(chunk_seed)
    rng = np.random.default_rng(chunk_seed)
    if kind == 'demo':
      policy = fetch_scripted.scripted_policy(env_name, demo_noise, 0.0, rng)
    else:
      policy = fetch_scripted.scripted_policy(
          env_name, autonomous_noise, autonomous_random_prob, rng)
    episodes, attempts, successes = [], 0, 0
    while len(episodes) < count:
      attempts += 1
      if attempts > MAX_DEMO_ATTEMPTS_FACTOR * count:
        raise ValueError(
            f'{env_name}: only {len(episodes)} successful demonstrations in '
            f'{attempts - 1} attempts (demo_noise {demo_noise}); lower '
            '--demo_noise or pass --nodemo_successes_only')
      episode, info = generation.rollout(env, policy)
      successes += int(info['success'])
      if kind == 'demo' and demo_successes_only and not info['success']:
        continue
      episodes.append(episode)
      progress.update(1)
    done += count
    chunks.save(index, episodes, {'attempts': attempts, 'successes': successes,
                                  'is_demo': kind == 'demo'})
  env.close()
  progress.done()

  refs_path = os.path.join(work_dir, 'reference_scores.json')
  if os.path.exists(refs_path):
    with open(refs_path) as f:
      refs = json.load(f)
  else:
    start = time.time()
    random, scripted = reference_scores(env_name, ref_episodes, seed + 7_919)
    refs = {'random': random, 'scripted': scripted}
    files.atomic_write_text(refs_path, json.dumps(refs, indent=2) + '\n')
    print(f'Reference scores ({2 * ref_episodes} episodes, '
          f'{time.time() - start:.0f}s): random success rate '
          f'{random["success_rate"]:.3f}, scripted {scripted["success_rate"]:.3f}')
  episodes, infos = chunks.load_all()
  attempts = {'demo': 0, 'autonomous': 0}
  successes = {'demo': 0, 'autonomous': 0}
  for is_demo, a, s in zip(infos.get('is_demo', []), infos.get('attempts', []),
                           infos.get('successes', [])):
    kind = 'demo' if bool(is_demo) else 'autonomous'
    attempts[kind] += int(a)
    successes[kind] += int(s)
  returns = np.array([e.episode_return for e in episodes])
  summary = dict(
      dataset_id=dataset_id, env=env_name, episodes=len(episodes),
      steps=int(sum(e.length for e in episodes)),
      demos=num_demos, autonomous=num_autonomous,
      demo_success_rate=(successes['demo'] / attempts['demo']
                         if attempts['demo'] else None),
      autonomous_success_rate=(successes['autonomous'] / attempts['autonomous']
                               if attempts['autonomous'] else None),
      data_success_fraction=float(returns.mean()),
      ref_min_score=refs['random']['mean_return'],
      ref_max_score=refs['scripted']['mean_return'],
      random=refs['random'], scripted=refs['scripted'])
  if summary['ref_min_score'] == summary['ref_max_score']:
    raise ValueError(f'random and scripted success rates are equal '
                     f'({summary["ref_min_score"]}); increase --ref_episodes')
  path = minari_data.write_minari_dataset(
      root, dataset_id, episodes, env_name,
      ref_min_score=summary['ref_min_score'],
      ref_max_score=summary['ref_max_score'],
      algorithm_name='scripted demonstrations + noisy scripted autonomous',
      description=(
          f'Q-Transformer-style data for {env_name}: {num_demos} scripted '
          f'demonstrations (noise {demo_noise}, successes only: '
          f'{demo_successes_only}) followed by {num_autonomous} autonomous '
          f'episodes (noise {autonomous_noise}, random-action probability '
          f'{autonomous_random_prob}). Reward 1 on success (terminal), else 0.'),
      extra_metadata={'generator': 'launch/generate_fetch_data.py',
                      'config': config, 'reference': refs,
                      'num_demo_episodes': num_demos,
                      'demo_episode_indices': [0, num_demos],
                      'demo_success_rate': summary['demo_success_rate'],
                      'autonomous_success_rate':
                          summary['autonomous_success_rate']},
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
  with cli.user_errors('generate_fetch_data.py'):
    path, s = generate(
        FLAGS.root, FLAGS.env, FLAGS.dataset_id, FLAGS.num_demos,
        FLAGS.demo_noise, FLAGS.demo_successes_only, FLAGS.num_autonomous,
        FLAGS.autonomous_noise, FLAGS.autonomous_random_prob,
        FLAGS.ref_episodes, FLAGS.episodes_per_chunk, FLAGS.work_dir,
        FLAGS.keep_work_dir, FLAGS.seed, FLAGS.overwrite)

  def rate(x):
    return 'n/a' if x is None else f'{x:.3f}'

  print(f'Wrote {s["steps"]:,} steps ({s["episodes"]} episodes) of {s["env"]} '
        f'to {path} in {time.time() - start:.0f}s')
  print(f'  success rates: demonstrations {rate(s["demo_success_rate"])} '
        f'(of attempts), autonomous {rate(s["autonomous_success_rate"])}; '
        f'episodes with reward 1 in the data {s["data_success_fraction"]:.3f}')
  print(f'  ref_min_score (random) {s["ref_min_score"]:.3f}, ref_max_score '
        f'(script, no noise) {s["ref_max_score"]:.3f}')
  print(f'  source: minari:{os.path.abspath(FLAGS.root)}:{s["dataset_id"]}')


if __name__ == '__main__':
  app.run(main)
