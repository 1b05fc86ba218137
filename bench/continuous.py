r"""Decision Transformer vs sequence BC on continuous control, and the window pipeline.

  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/continuous.py --data_root=DATA \
      [--root_dir=runs/continuous] [--seeds=3] [--train_steps=1000] [--smoke] [--pipeline]

Experiment (default). DT ('dt') and sequence BC ('sequence_bc', the same
backbone trained by imitation, no return tokens) on PointMaze UMaze and
Medium (maze2d) and Hopper medium-replay, `--seeds` seeds each, through
`launch/train.py` (gin: dt_maze.gin / dt_gym.gin [+ dt_sequence_bc.gin] +
continuous_local.gin), one train.py at a time (2 cores). Runs are resumable:
a run whose last evaluation reached `--train_steps` is skipped, an
interrupted one resumes from its checkpoint. Then `launch/report.py` with a
reference-scores file made from the datasets' ref_min_score / ref_max_score:
its normalised scores are D4RL scores / 100 (IQM and bootstrap CIs).

Datasets are read from `--data_root` (Minari layout); they are made by
`launch/generate_maze_data.py` and `launch/generate_locomotion_data.py`. A
missing dataset is named with the command that makes it, and the others run.

`--smoke` (about 2 minutes): generates a tiny UMaze dataset under
ROOT/smoke_data if needed, 1 seed x 2 methods x 100 updates with one
1-episode evaluation each, and the report.

`--pipeline`: windows/s sampled from Reverb (K = 20, batch 64, Hopper-sized
synthetic episodes; `reverb_windows.make_window_dataset`) next to the train
steps/s of the DT learner at the continuous_local.gin size and at the
official size (width 128, 3 layers) on the same batches held fixed, and the
learner fed by the pipeline: if the pipeline made the learner wait, the fed
rate would fall below the fixed-batch rate.
"""
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

flags.DEFINE_string('data_root', None, 'Minari datasets root (default ROOT/data).')
flags.DEFINE_string('root_dir', 'runs/continuous', 'Where runs and the report go.')
flags.DEFINE_integer('seeds', 3, 'Seeds per method and dataset.')
flags.DEFINE_list('methods', ['dt', 'sequence_bc'], 'Methods.')
flags.DEFINE_list('datasets', ['pointmaze/umaze-v0', 'pointmaze/medium-v0',
                               'tf_offline_q/hopper-medium-replay-v0'], 'Minari dataset ids.')
flags.DEFINE_integer('train_steps', 1000, 'Updates per run.')
flags.DEFINE_integer('eval_interval', 500, 'Updates between evaluations.')
flags.DEFINE_integer('eval_episodes', 5, 'Episodes per evaluation.')
flags.DEFINE_integer('reps', 2000, 'Bootstrap resamples of the report.')
flags.DEFINE_bool('smoke', False, 'A ~2 minute run on a tiny generated UMaze dataset.')
flags.DEFINE_bool('pipeline', False, 'Measure windows/s against the DT learner instead.')
flags.DEFINE_float('seconds', 8.0, 'Sampling time of --pipeline.')
FLAGS = flags.FLAGS

# (gin file, command that makes the dataset) per dataset family.
MAKE = {
    'pointmaze/umaze-v0': ('dt_maze.gin', 'launch/generate_maze_data.py --root={root} '
                           '--env=PointMaze_UMaze-v3 --num_steps=1000000'),
    'pointmaze/medium-v0': ('dt_maze.gin', 'launch/generate_maze_data.py --root={root} '
                            '--env=PointMaze_Medium-v3 --num_steps=2000000'),
    'tf_offline_q/hopper-medium-replay-v0': (
        'dt_gym.gin', 'launch/generate_locomotion_data.py --root={root} --env=Hopper-v5 '
        '--kind=medium-replay'),
}


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2'))


def _eval_records(run_dir):
  path = os.path.join(run_dir, 'eval', 'returns.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def run(*command, log=None):
  print('$ ' + ' '.join(shlex.quote(c) for c in command), flush=True)
  start = time.time()
  proc = subprocess.run([sys.executable, *command], cwd=REPO, env=_env(),
                        stdout=log, stderr=subprocess.STDOUT if log else None)
  return proc.returncode, time.time() - start


def gin_family(dataset_id):
  if dataset_id in MAKE:
    return MAKE[dataset_id][0]
  return 'dt_maze.gin' if 'maze' in dataset_id else 'dt_gym.gin'


def train_command(run_dir, data_root, dataset_id, method, seed, train_steps, eval_interval,
                  eval_episodes):
  command = ['launch/train.py', f'--root_dir={run_dir}', f'--gin_file={gin_family(dataset_id)}']
  if method == 'sequence_bc':
    command.append('--gin_file=dt_sequence_bc.gin')
  command += [
      '--gin_file=continuous_local.gin',
      f"--gin_bindings=train_eval.data_source='minari:{data_root}:{dataset_id}'",
      f'--gin_bindings=train_eval.seed={seed}',
      f'--gin_bindings=train_eval.num_train_steps={train_steps}',
      f'--gin_bindings=train_eval.eval_interval={eval_interval}',
      f'--gin_bindings=train_eval.eval_max_episodes={eval_episodes}',
      f'--gin_bindings=train_eval.checkpoint_interval={eval_interval}',
      f'--gin_bindings=train_eval.policy_save_interval={train_steps}',
  ]
  return command


def check_datasets(data_root, dataset_ids):
  """(present ids, their metadata); prints each missing one with its command."""
  from tf_offline_q.data import minari_data  # pylint: disable=g-import-not-at-top
  present, metadatas = [], []
  for dataset_id in dataset_ids:
    path = minari_data.dataset_path(data_root, dataset_id)
    if not os.path.isdir(path):
      make = MAKE.get(dataset_id, (None, 'launch/generate_*_data.py'))[1].format(root=data_root)
      print(f'MISSING dataset {dataset_id} (no {path}); make it with:\n'
            f'  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python {make}', flush=True)
      continue
    _, metadata = minari_data.load_source(f'minari:{data_root}:{dataset_id}')
    present.append(dataset_id)
    metadatas.append(metadata)
  return present, metadatas


def run_dir_of(root, dataset_id, method, seed):
  return os.path.join(root, 'runs', dataset_id.replace('/', '_'), f'{method}_s{seed}')


def train_all(root, data_root, dataset_ids, methods, seeds, train_steps, eval_interval,
              eval_episodes):
  jobs = [(d, m, s) for d in dataset_ids for s in range(seeds) for m in methods]
  failed, done_runs = [], []
  start = time.time()
  for i, (dataset_id, method, seed) in enumerate(jobs):
    run_dir = run_dir_of(root, dataset_id, method, seed)
    records = _eval_records(run_dir)
    if records and records[-1]['step'] >= train_steps:
      print(f'[{i + 1}/{len(jobs)}] {dataset_id} {method} seed {seed}: done before, skipped',
            flush=True)
      done_runs.append(run_dir)
      continue
    os.makedirs(run_dir, exist_ok=True)
    command = train_command(run_dir, data_root, dataset_id, method, seed, train_steps,
                            eval_interval, eval_episodes)
    with open(os.path.join(run_dir, 'train.log'), 'a') as log:
      code, seconds = run(*command, log=log)
    records = _eval_records(run_dir)
    elapsed = time.time() - start
    eta = elapsed / (i + 1) * (len(jobs) - i - 1)
    last = records[-1] if records else None
    score = 'no evaluation' if not last else (
        f'return {last["mean_return"]:.2f}, D4RL {last.get("d4rl_normalized") or 0:.1f}'
        + (f', success rate {last["success_rate"]:.2f}'
           if last.get('success_rate') is not None else ''))
    status = 'ok' if code == 0 else f'FAILED (exit {code}, log {run_dir}/train.log)'
    print(f'[{i + 1}/{len(jobs)}] {dataset_id} {method} seed {seed}: {status} in '
          f'{seconds:.0f}s, {score}; ETA {eta / 60:.1f} min', flush=True)
    if code:
      failed.append(run_dir)
    else:
      done_runs.append(run_dir)
  return done_runs, failed


def smoke_data(root):
  """A tiny UMaze dataset (made once) for --smoke."""
  data_root = os.path.join(root, 'smoke_data')
  if not os.path.isdir(os.path.join(data_root, 'pointmaze', 'umaze-v0')):
    code, _ = run('launch/generate_maze_data.py', f'--root={data_root}',
                  '--env=PointMaze_UMaze-v3', '--num_steps=3000', '--ref_episodes=3',
                  '--episodes_per_chunk=5')
    if code:
      sys.exit('continuous: generating the smoke dataset failed')
  return data_root


# ----------------------------------------------------------------- pipeline
def measure_pipeline(seconds=8.0, context_length=20, batch_size=64, num_steps=20_000,
                     obs_dim=11, act_dim=3, fed_steps=30):
  """Prints windows/s and the DT learner's steps/s; returns them as a dict."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_agents.specs import tensor_spec  # pylint: disable=g-import-not-at-top
  from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
  from tf_agents.utils import common  # pylint: disable=g-import-not-at-top
  from tf_offline_q.agents import decision_transformer as dt  # pylint: disable=g-import-not-at-top
  from tf_offline_q.data import minari_data  # pylint: disable=g-import-not-at-top
  from tf_offline_q.data import reverb_windows  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  episodes, total = [], 0
  while total < num_steps:
    length = int(rng.integers(10, 1000))
    term = np.zeros(length, bool)
    term[-1] = True
    episodes.append(minari_data.ContinuousEpisode(
        rng.normal(size=(length + 1, obs_dim)).astype(np.float32),
        rng.uniform(-1, 1, size=(length, act_dim)).astype(np.float32),
        rng.normal(size=length).astype(np.float32), term, np.zeros(length, bool)))
    total += length
  layout = reverb_windows.WindowLayout(context_length, obs_dim, act_dim)
  server = reverb_windows.WindowServer({'bench': layout})
  stats = server.fill('bench', episodes)
  print(f'(a) write: {stats.steps_per_second:,.0f} steps/s into Reverb ({stats.steps} steps, '
        f'{stats.items} windows of {context_length})', flush=True)
  dataset = reverb_windows.make_window_dataset(server.address, 'bench', layout, batch_size)
  it = iter(dataset)
  for _ in range(10):
    next(it)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    batch = next(it)
    count += 1
  batch.observation.numpy()
  batches_per_sec = count / (time.perf_counter() - start)
  print(f'(b) sample: {batches_per_sec:,.1f} batches/s of {batch_size} windows = '
        f'{batches_per_sec * batch_size:,.0f} windows/s (K={context_length})', flush=True)
  obs_spec = tensor_spec.TensorSpec([obs_dim], tf.float32)
  act_spec = tensor_spec.BoundedTensorSpec([act_dim], tf.float32, -1.0, 1.0)
  results = {'windows_per_sec': batches_per_sec * batch_size,
             'batches_per_sec': batches_per_sec}
  for label, width, depth in (('continuous_local', 64, 2), ('official', 128, 3)):
    network = dt.DecisionTransformerNetwork(obs_spec, act_spec, context_length=context_length,
                                            width=width, depth=depth, num_heads=1)
    agent = dt.DecisionTransformerAgent(ts.time_step_spec(obs_spec), act_spec, network,
                                        target_return=1.0)
    train = common.function(agent.train)
    fixed = next(it)
    for _ in range(3):
      train(fixed)
    rates = {'fixed': [], 'fed': []}
    for _ in range(3):  # alternate, so outside load hits both alike
      for kind in ('fixed', 'fed'):
        start = time.perf_counter()
        for _ in range(fed_steps // 3):
          loss = train(fixed if kind == 'fixed' else next(it))
        float(loss.loss)
        rates[kind].append((fed_steps // 3) / (time.perf_counter() - start))
    fixed_rate, fed_rate = statistics.median(rates['fixed']), statistics.median(rates['fed'])
    verdict = 'OK' if batches_per_sec >= fixed_rate else 'TOO SLOW'
    print(f'(c) DT learner {label} (width {width}, {depth} layers, batch {batch_size}): '
          f'{fixed_rate:.1f} steps/s on a fixed batch, {fed_rate:.1f} fed by the pipeline '
          f'({fed_rate / fixed_rate:.0%}); pipeline/learner = '
          f'{batches_per_sec / fixed_rate:.1f}x: {verdict}', flush=True)
    results[label] = {'fixed': fixed_rate, 'fed': fed_rate}
  server.stop()
  return results


def report_and_exit(root, run_dirs, scores_path, start, failed):
  """Runs launch/report.py over `run_dirs`, prints it and the wall time; exit 1
  if any run failed (shared with bench/qt.py)."""
  report_dir = os.path.join(root, 'report')
  if run_dirs:
    code, _ = run('launch/report.py', f'--runs={",".join(run_dirs)}',
                  f'--output_dir={report_dir}', f'--reps={FLAGS.reps}',
                  f'--reference_scores={scores_path}')
    if code == 0:
      with open(os.path.join(report_dir, 'report.md')) as f:   # it says what 1.0 is
        print('\n' + f.read())
  print(f'\nTotal wall time: {(time.time() - start) / 60:.1f} min'
        + (f'; FAILED runs: {failed}' if failed else ''))
  if failed:
    sys.exit(1)


def main(argv):
  del argv
  if FLAGS.pipeline:
    measure_pipeline(FLAGS.seconds)
    return
  start = time.time()
  root = os.path.abspath(FLAGS.root_dir)
  unknown = set(FLAGS.methods) - {'dt', 'sequence_bc'}
  if unknown:
    raise app.UsageError(f'unknown methods {sorted(unknown)}; choose from dt, sequence_bc')
  if FLAGS.smoke:
    data_root = smoke_data(root)
    dataset_ids, seeds, train_steps, eval_interval, eval_episodes = (
        ['pointmaze/umaze-v0'], 1, 100, 100, 1)
  else:
    data_root = os.path.abspath(FLAGS.data_root or os.path.join(root, 'data'))
    dataset_ids, seeds, train_steps, eval_interval, eval_episodes = (
        FLAGS.datasets, FLAGS.seeds, FLAGS.train_steps, FLAGS.eval_interval,
        FLAGS.eval_episodes)
  present, metadatas = check_datasets(data_root, dataset_ids)
  if not present:
    sys.exit('continuous: no dataset to run on (see MISSING above)')
  from tf_offline_q.train import continuous  # pylint: disable=g-import-not-at-top
  scores_path = continuous.write_reference_scores(os.path.join(root, 'reference_scores.json'),
                                                  metadatas)
  for metadata in metadatas:
    print(f'{metadata["dataset_id"]}: {metadata["num_episodes"]} episodes, '
          f'{metadata["num_steps"]} steps; ref_min_score {metadata["ref_min_score"]:.1f}, '
          f'ref_max_score {metadata["ref_max_score"]:.1f}', flush=True)
  run_dirs, failed = train_all(root, data_root, present, FLAGS.methods, seeds, train_steps,
                               eval_interval, eval_episodes)
  report_and_exit(root, run_dirs, scores_path, start, failed)

if __name__ == '__main__':
  app.run(main)
