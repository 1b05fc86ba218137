r"""Q-Transformer against imitation, DT and QT on a Fetch dataset, with its ablations.

  TF_CPP_MIN_LOG_LEVEL=2 nice -n 5 .venv/bin/python bench/q_transformer.py \
      [--root_dir=runs/q_transformer] [--data_root=DATA] [--seeds=3] [--train_steps=N] [--smoke]

The experiment (issue 15). One FetchPush dataset made by
`launch/generate_fetch_data.py` (made here under DATA if missing: `--num_demos`
scripted demonstrations, all successful, plus `--num_autonomous` noisy
autonomous episodes, mostly failures; reward 1 on success, which ends the
episode, else 0), and on it, `--seeds` seeds of

  q_transformer                  gin/q_transformer.gin (the paper's agent)
  q_transformer_no_conservative  the ablations: gin/q_transformer_<name>.gin
  q_transformer_softmax
  q_transformer_no_mc
  q_transformer_one_step
  q_transformer_bc               imitation of the whole dataset on Q-Transformer's own
                                 network: per-dimension cross-entropy towards the dataset's
                                 bins, the same greedy decoding (gin/q_transformer_bc.gin)
  sequence_bc                    imitation of the whole dataset: the DT's transformer
                                 without return tokens (dt_common.gin + dt_sequence_bc.gin)
  dt                             the Decision Transformer (dt_common.gin), target return
                                 = the dataset's ref_max_score (the script's success rate)
  qt                             QT (qt_common.gin + qt_local.gin, eta 1: QtAgent's default;
                                 the paper gives no Fetch value)

each one `launch/train.py` run at CPU size (q_transformer_local.gin; the
sequence agents continuous_local.gin, returns scaled by 1 as they are 0 / 1),
one at a time (2 cores), all with the same updates, batch 64 and evaluations
(`--eval_episodes` greedy episodes every `--eval_interval` updates). Runs are
resumable: a run whose last evaluation reached `--train_steps` is skipped, an
interrupted one resumes from its checkpoint (bench/continuous.py's
`train_all`). Then `launch/report.py` with IQM and bootstrap 95% CIs; on
Fetch the normalised score is the success rate (reference scores random 0,
1.0 = always succeeds: `continuous.write_reference_scores`).

"BC on the same transformer" is q_transformer_bc: the same
`ActionTransformerQNetwork`, discretisation, windows' steps and greedy policy as
q_transformer, only the loss differs (agents/q_transformer_bc.py); sequence_bc
is imitation on another network (the DT's).

Claims to check (the paper): Q-Transformer uses the failed episodes to beat
imitation; both the conservative term and the MC bound matter; n-step
returns learn faster than one-step.

Budget (the defaults: 9 methods x 3 seeds = 27 runs of 2,000 updates at batch
64, evaluated at 1,000 and 2,000 with 20 greedy episodes of <= 50 steps).
Measured on 2026-11-30 (the README's results), the 27 runs in three processes
side by side (Q-Transformer and its ablations; DT, sequence BC and QT;
q_transformer_bc) while bench/scaled_ql.py and test runs shared the 2 cores
(load average 5-12): per run q_transformer* 178-309 s, q_transformer_bc
88-96 s, sequence BC 267-297 s, DT 313-475 s, QT 425-614 s; 61 minutes of wall
time for the whole set. One process alone on an idle machine should take
about that long (not measured).

`--smoke`: a tiny FetchPush dataset under ROOT/smoke_data (10 demonstrations,
20 autonomous episodes), 1 seed of q_transformer, q_transformer_bc, sequence_bc,
dt and qt, 100 updates each and one 2-episode evaluation, and the report (a few
minutes).

This script reuses bench/continuous.py's helpers and flags (--data_root,
--root_dir, --seeds, --methods, --train_steps, --eval_interval,
--eval_episodes, --reps, --smoke are defined by that module); it sets its own
defaults.
"""
import os
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import continuous as bench_continuous  # pylint: disable=g-import-not-at-top,wrong-import-position

Q_TRANSFORMER_METHODS = ('q_transformer', 'q_transformer_no_conservative',
                         'q_transformer_softmax', 'q_transformer_no_mc', 'q_transformer_one_step',
                         'q_transformer_bc')
BASELINES = ('sequence_bc', 'dt', 'qt')
METHODS = Q_TRANSFORMER_METHODS + BASELINES
DATASET_ID = 'fetch/push-qtransformer-v0'
SMOKE_DATASET_ID = 'fetch/push-smoke-v0'

flags.DEFINE_string('dataset_id', DATASET_ID, 'Minari id of the Fetch dataset.')
flags.DEFINE_integer('num_demos', 25, 'Scripted demonstrations in a generated dataset.')
flags.DEFINE_integer('num_autonomous', 475, 'Autonomous episodes in a generated dataset.')
FLAGS = flags.FLAGS
FLAGS.set_default('root_dir', 'runs/q_transformer')
FLAGS.set_default('methods', list(METHODS))
FLAGS.set_default('train_steps', 2000)
FLAGS.set_default('eval_interval', 1000)
FLAGS.set_default('eval_episodes', 20)


def gin_files(method):
  """The train.py gin files of a method (the CPU-size shrink last)."""
  if method in Q_TRANSFORMER_METHODS:
    return [f'{method}.gin', 'q_transformer_local.gin']
  if method == 'qt':
    return ['qt_common.gin', 'continuous_local.gin', 'qt_local.gin']
  return ['dt_common.gin'] + (['dt_sequence_bc.gin'] if method == 'sequence_bc' else []) + [
      'continuous_local.gin']


def train_command(run_dir, data_root, dataset_id, method, seed, train_steps, eval_interval,
                  eval_episodes):
  """One launch/train.py run (bench/continuous.py's `train_all` calls it)."""
  command = ['launch/train.py', f'--root_dir={run_dir}']
  command += [f'--gin_file={g}' for g in gin_files(method)]
  bindings = [f"train_eval.data_source='minari:{data_root}:{dataset_id}'",
              f"train_eval.method='{method}'",
              f'train_eval.seed={seed}', f'train_eval.num_train_steps={train_steps}',
              'train_eval.batch_size=64',
              f'train_eval.eval_interval={eval_interval}',
              f'train_eval.eval_max_episodes={eval_episodes}',
              f'train_eval.checkpoint_interval={eval_interval}',
              f'train_eval.policy_save_interval={train_steps}']
  if method in BASELINES:
    # Success returns are 0 or 1: no scaling; Fetch episodes have 50 steps.
    bindings += ['DecisionTransformerNetwork.return_scale=1.0',
                 'DecisionTransformerNetwork.max_timestep=64']
  return command + [f'--gin_bindings={b}' for b in bindings]


def make_dataset(data_root, dataset_id, num_demos, num_autonomous, smoke=False):
  """Generates the Fetch dataset with launch/generate_fetch_data.py if missing."""
  from tf_offline_q.data import minari_data  # pylint: disable=g-import-not-at-top
  if os.path.isdir(minari_data.dataset_path(data_root, dataset_id)):
    return
  extra = ['--ref_episodes=4', '--episodes_per_chunk=10'] if smoke else ['--ref_episodes=100']
  code, seconds = bench_continuous.run(
      'launch/generate_fetch_data.py', f'--root={data_root}', '--env=FetchPush-v4',
      f'--dataset_id={dataset_id}', f'--num_demos={num_demos}',
      f'--num_autonomous={num_autonomous}', *extra)
  if code:
    sys.exit(f'q_transformer: generating {dataset_id} failed (exit {code})')
  print(f'Generated {dataset_id} in {seconds:.0f}s', flush=True)


def main(argv):
  del argv
  start = time.time()
  unknown = set(FLAGS.methods) - set(METHODS)
  if unknown:
    raise app.UsageError(f'unknown methods {sorted(unknown)}; choose from {list(METHODS)}')
  root = os.path.abspath(FLAGS.root_dir)
  if FLAGS.smoke:
    data_root = os.path.join(root, 'smoke_data')
    dataset_id, num_demos, num_autonomous = SMOKE_DATASET_ID, 10, 20
    methods = ['q_transformer', 'q_transformer_bc', 'sequence_bc', 'dt', 'qt']
    seeds, train_steps, eval_interval, eval_episodes = 1, 100, 100, 2
  else:
    data_root = os.path.abspath(FLAGS.data_root or os.path.join(root, 'data'))
    dataset_id, num_demos, num_autonomous = FLAGS.dataset_id, FLAGS.num_demos, FLAGS.num_autonomous
    methods = list(FLAGS.methods)
    seeds, train_steps, eval_interval, eval_episodes = (
        FLAGS.seeds, FLAGS.train_steps, FLAGS.eval_interval, FLAGS.eval_episodes)
  make_dataset(data_root, dataset_id, num_demos, num_autonomous, smoke=FLAGS.smoke)
  present, metadatas = bench_continuous.check_datasets(data_root, [dataset_id])
  if not present:
    sys.exit('q_transformer: no dataset to run on (see MISSING above)')
  metadata = metadatas[0]
  print(f'{dataset_id}: {metadata["num_episodes"]} episodes, {metadata["num_steps"]} steps; '
        f'random success rate {metadata["ref_min_score"]:.2f}, scripted '
        f'{metadata["ref_max_score"]:.2f}', flush=True)
  from tf_offline_q.train import continuous  # pylint: disable=g-import-not-at-top
  scores_path = continuous.write_reference_scores(os.path.join(root, 'reference_scores.json'),
                                                  metadatas)
  # bench/continuous.py's loop, with this script's commands.
  bench_continuous.train_command = train_command
  run_dirs, failed = bench_continuous.train_all(root, data_root, present, methods, seeds,
                                                train_steps, eval_interval, eval_episodes)
  print('On Fetch the normalised score below is the success rate (random 0, 1.0 = always '
        'succeeds), not a D4RL score.', flush=True)
  bench_continuous.report_and_exit(root, run_dirs, scores_path, start, failed)


if __name__ == '__main__':
  app.run(main)
