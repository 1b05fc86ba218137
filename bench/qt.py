r"""QT against the Decision Transformer and sequence BC, with QT's ablations.

  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/qt.py --data_root=DATA \
      [--root_dir=runs/qt] [--seeds=3] [--train_steps=1000] [--smoke]

Experiment. QT ('qt', gin qt_maze.gin / qt_gym.gin), DT ('dt') and sequence BC
('sequence_bc', the DT backbone trained by imitation without returns: the
project's BC for sequences) on PointMaze UMaze, Medium and Large (D4RL maze2d)
and Hopper medium-replay, `--seeds` seeds each; the paper's ablations
'qt_eta0' (no Q term, gin qt_eta0.gin) and 'qt_one_step' (one-step instead of
n-step critic targets, qt_one_step.gin) on `--ablation_datasets`. Every run is
one `launch/train.py` (one at a time: 2 cores) at CPU size
(continuous_local.gin, + qt_local.gin for QT), with the official per-task eta
and gradient clipping (run.sh: maze2d-umaze 5 / 20, medium 5 / 9, large 4 / 9,
hopper-medium-replay 3 / 9). Runs are resumable (a finished run is skipped).
Then `launch/report.py` over all runs, with reference scores from the
datasets' ref_min_score / ref_max_score: its normalised scores are D4RL
scores / 100, with IQM and bootstrap 95% CIs per method.

Claims to check (the paper): QT beats DT, most of all on the mazes (stitching);
n-step targets beat one-step; eta > 0 matters.

Budget: 4 datasets x 3 seeds x 3 methods + 2 ablations x 1 dataset (UMaze) x 3
seeds = 42 runs of `--train_steps` (default 1000 updates, evaluations of 5
episodes at 500 and 1000). Measured on the 2-core machine with two or three
runs side by side: 1.5-8 minutes per run (DT and BC about 3-6, QT 5-8: start
up, Reverb fill, 1000 updates at 6-11 per second, SavedModel export, the two
evaluations, which are long on Medium and Large). Run the methods in two or
three processes with the same --root_dir (e.g. --methods=dt,sequence_bc and
--methods=qt,qt_one_step): jobs are per run directory, so they share nothing.

`--smoke`: a tiny generated UMaze dataset (bench/continuous.py's), 1 seed of
QT and DT, 100 updates, one 1-episode evaluation each, and the report.

This script reuses bench/continuous.py's helpers and flags (that module
defines --data_root, --root_dir, --seeds, --methods, --datasets,
--train_steps, --eval_interval, --eval_episodes, --reps, --smoke when
imported); it sets its own defaults for --root_dir, --methods and --datasets.
"""
import os
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import continuous as bench_continuous  # pylint: disable=g-import-not-at-top,wrong-import-position

MAIN_METHODS = ('qt', 'dt', 'sequence_bc')
ABLATIONS = ('qt_eta0', 'qt_one_step')
DATASETS = ('pointmaze/umaze-v0', 'pointmaze/medium-v0', 'pointmaze/large-v0',
            'tf_offline_q/hopper-medium-replay-v0')
# run.sh: (eta, gradient norm clip) per task.
PER_TASK = {
    'pointmaze/umaze-v0': (5.0, 20.0),
    'pointmaze/medium-v0': (5.0, 9.0),
    'pointmaze/large-v0': (4.0, 9.0),
    'tf_offline_q/hopper-medium-replay-v0': (3.0, 9.0),
}
MAKE_LARGE = ('dt_maze.gin', 'launch/generate_maze_data.py --root={root} '
              '--env=PointMaze_Large-v3 --num_steps=4000000')

flags.DEFINE_list('ablation_datasets', ['pointmaze/umaze-v0'],
                  'Datasets of the ablations qt_eta0 and qt_one_step.')
FLAGS = flags.FLAGS
FLAGS.set_default('root_dir', 'runs/qt')
FLAGS.set_default('methods', list(MAIN_METHODS + ABLATIONS))
FLAGS.set_default('datasets', list(DATASETS))


def gin_files(dataset_id, method):
  """The train.py gin files of a method on a dataset."""
  family = 'maze' if 'maze' in dataset_id else 'gym'
  if method in ('dt', 'sequence_bc'):
    files = [f'dt_{family}.gin'] + (['dt_sequence_bc.gin'] if method == 'sequence_bc' else [])
    return files + ['continuous_local.gin']
  files = [f'qt_{family}.gin']
  if method != 'qt':
    files.append(f'{method}.gin')                         # qt_eta0.gin / qt_one_step.gin
  return files + ['continuous_local.gin', 'qt_local.gin']


def train_command(run_dir, data_root, dataset_id, method, seed, train_steps, eval_interval,
                  eval_episodes):
  command = ['launch/train.py', f'--root_dir={run_dir}']
  command += [f'--gin_file={g}' for g in gin_files(dataset_id, method)]
  bindings = [f"train_eval.data_source='minari:{data_root}:{dataset_id}'",
              f'train_eval.seed={seed}', f'train_eval.num_train_steps={train_steps}',
              f'train_eval.eval_interval={eval_interval}',
              f'train_eval.eval_max_episodes={eval_episodes}',
              f'train_eval.checkpoint_interval={eval_interval}',
              f'train_eval.policy_save_interval={train_steps}']
  if method.startswith('qt') and dataset_id in PER_TASK:
    eta, clip = PER_TASK[dataset_id]
    if method != 'qt_eta0':
      bindings.append(f'QtAgent.eta={eta}')
    bindings.append(f'QtAgent.gradient_clipping={clip}')
  return command + [f'--gin_bindings={b}' for b in bindings]


def main(argv):
  del argv
  start = time.time()
  known = set(MAIN_METHODS + ABLATIONS)
  if set(FLAGS.methods) - known:
    raise app.UsageError(f'unknown methods {sorted(set(FLAGS.methods) - known)}; choose from '
                         f'{sorted(known)}')
  bench_continuous.MAKE.setdefault('pointmaze/large-v0', MAKE_LARGE)
  # bench/continuous.py's loop, with this script's commands.
  bench_continuous.train_command = train_command
  root = os.path.abspath(FLAGS.root_dir)
  if FLAGS.smoke:
    data_root = bench_continuous.smoke_data(root)
    plan = [(['pointmaze/umaze-v0'], ['qt', 'dt'])]
    seeds, train_steps, eval_interval, eval_episodes = 1, 100, 100, 1
  else:
    data_root = os.path.abspath(FLAGS.data_root or os.path.join(root, 'data'))
    main_methods = [m for m in FLAGS.methods if m in MAIN_METHODS]
    ablations = [m for m in FLAGS.methods if m in ABLATIONS]
    plan = [(FLAGS.datasets, main_methods)]
    if ablations:
      plan.append(([d for d in FLAGS.ablation_datasets], ablations))
    seeds, train_steps, eval_interval, eval_episodes = (
        FLAGS.seeds, FLAGS.train_steps, FLAGS.eval_interval, FLAGS.eval_episodes)
  all_ids = sorted({d for datasets, _ in plan for d in datasets})
  present, metadatas = bench_continuous.check_datasets(data_root, all_ids)
  if not present:
    sys.exit('qt: no dataset to run on (see MISSING above)')
  from tf_offline_q.train import continuous  # pylint: disable=g-import-not-at-top
  scores_path = continuous.write_reference_scores(os.path.join(root, 'reference_scores.json'),
                                                  metadatas)
  run_dirs, failed = [], []
  for datasets, methods in plan:
    datasets = [d for d in datasets if d in present]
    if not datasets or not methods:
      continue
    done, bad = bench_continuous.train_all(root, data_root, datasets, methods, seeds,
                                           train_steps, eval_interval, eval_episodes)
    run_dirs += done
    failed += bad
  bench_continuous.report_and_exit(root, run_dirs, scores_path, start, failed)

if __name__ == '__main__':
  app.run(main)
