r"""The ViT paper's Figures 2-4 at CPU scale, on logged replay, beside d3rlpy on the same data.

  python bench/paper_figures.py --root_dir=runs/paper_figures            # the default plan
  python bench/paper_figures.py --root_dir=runs/paper_figures --figures=2,3,4   # + Figure 4
  python bench/paper_figures.py --smoke                                   # a few minutes
  python bench/paper_figures.py --dry_run                                 # plan and cost only

Steps (every one resumable: re-running the command skips what is done):

  1. data: logged replay like DQN-Replay, `launch/generate_logged_replay.py`
     (an online DQN learning each game, every transition it played written
     in order, one Dopamine checkpoint per iteration), for each of `--games`
     (default MinAtar-Breakout and MinAtar-Asterix, one process per game),
     `--iterations` x `--steps_per_iteration` agent steps (default 10 x 10K);
  2. reference scores (Table 3's meaning, for games outside Table 3): random
     play = 0 (measured with the evaluation protocol), the logged dataset's
     average episode return = 1 (all its episodes, from the generator's
     learning curve) -> `{root_dir}/reference_scores.json`;
  3. runs, `--seeds` seeds each, at most `--parallel` at a time, each on the
     same `--fraction` `uniform` subset of a game's data (default 10%: about
     10K transitions of 100K; the paper's 5% of 50M is 2.5M), `local.gin`'s
     CPU size (`micro` transformer, batch 32, Adam 3e-4, target period 200,
     n-step 3, alpha 0.05), `--train_steps` updates, evaluated every
     `--eval_interval` with the paper's protocol on a reduced budget (sticky
     actions 0.25, epsilon 0.001, `--eval_steps` agent steps, at most
     `--eval_max_episodes` episodes, `--max_episode_frames` per episode).
     A finished run (its last evaluation at `--train_steps`) is skipped, an
     unfinished one resumed by `train.py` / `run_reference.py`:
       Figure 2  cql_vit, cql_vit_ts, bc_vit, bc_vit_ts
                 + d3rlpy_cql, d3rlpy_bc (`bench/d3rlpy_reference`: d3rlpy's
                 DiscreteCQL / DiscreteBC in their own venv on the identical
                 exported transitions, evaluated by our evaluation loop)
       Figure 3  cql_vit, cql_vit_ts, cql_convnet
       Figure 4  cql_vit, cql_vit_mean, cql_vit_learned,
                 cql_vit_ts, cql_vit_ts_mean, cql_vit_ts_learned
     `--extra_methods=bc_convnet` adds BC on the Nature convnet (d3rlpy's
     network) to Figure 2's report;
  4. `launch/report.py` per figure (IQM of the normalised scores with 95%
     stratified-bootstrap CIs, performance profiles, learning curves) into
     `{root_dir}/report/figure{N}/`, each report.md printed; then the raw
     returns per game and method, beside the data and random play.

Budget of the default plan (`--figures=2,3`, d3rlpy on, 2 games, 3 seeds:
5 methods x 6 = 30 of our runs and 2 x 6 = 12 d3rlpy runs, 2 at a time).
Measured here with one short niced run each (300 updates, the `micro`
models, MinAtar-Breakout logged replay, while the machine's other jobs kept
its load at 3-5; `--dry_run` prints the same arithmetic for other flags):

  ours      13-25 updates/s (cql_vit 17.5, cql_vit_ts 13-19, cql_convnet
            16-21, bc_vit 14-18); plan with 15/s; ~30 s of start-up, data
            loading and export per run; an evaluation of 1,000 agent steps
            ~8 s.  Run: 2000 / 15 + 30 + 2 x 8 = 179 s.
  d3rlpy    4.2 updates/s (1 torch thread; 139 ms per update, 16 ms of it
            building the n-step batch in NumPy; the Nature convnet in
            PyTorch on one core); plan with 5/s; ~25 s of start-up.
            Run: 2000 / 5 + 25 + 2 x 8 = 441 s.
  data      2 games x 100K steps x ~1.8 ms of CPU, one process per game:
            ~4 min; reference scores and the reports: ~2 min.

  (30 x 179 + 12 x 441) s / 2 processes = 5,330 s = 89 min, + 6 min = 95 min.

So the default is at the ~90 minute mark on an otherwise idle machine (the
rates above were measured under load); `--figures=2,3,4` adds 4 methods x 6
= 24 runs (+36 min), `--nod3rlpy` saves 44 min, `--train_steps` scales the
training part linearly.
"""
import collections
import json
import os
import sys
import threading
import time

from absl import app
from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import experiments  # pylint: disable=g-import-not-at-top
from tf_offline_q import progress as progress_lib  # pylint: disable=g-import-not-at-top

flags.DEFINE_string('root_dir', 'runs/paper_figures', 'Data, runs and reports.')
flags.DEFINE_list('games', ['MinAtar-Breakout', 'MinAtar-Asterix'], 'MinAtar (or ALE) games.')
flags.DEFINE_list('figures', ['2', '3'], 'Figures to run: any of 2, 3, 4.')
flags.DEFINE_list('extra_methods', [], 'More methods for the reports: bc_convnet.')
flags.DEFINE_bool('d3rlpy', True, "d3rlpy's DiscreteCQL and DiscreteBC on Figure 2's data.")
flags.DEFINE_integer('seeds', 3, 'Seeds per method and game.')
flags.DEFINE_integer('iterations', 10, 'Logged replay: iterations (checkpoints) per game.')
flags.DEFINE_integer('steps_per_iteration', 10_000, 'Logged replay: agent steps per iteration.')
flags.DEFINE_float('fraction', 0.1, 'Uniform subset of each game\'s logged replay.')
flags.DEFINE_integer('data_seed', 0, 'Seed of the subset.')
flags.DEFINE_integer('train_steps', 2000, 'Gradient updates per run.')
flags.DEFINE_integer('eval_interval', 1000, 'Updates between evaluations.')
flags.DEFINE_integer('eval_steps', 1000, 'Agent steps per evaluation (paper: 125K).')
flags.DEFINE_integer('eval_max_episodes', 30, 'Stop an evaluation after this many episodes.')
flags.DEFINE_integer('max_episode_frames', 2000, 'Frame cap per evaluation episode.')
flags.DEFINE_integer('batch_size', 32, 'Batch size (all methods, d3rlpy too).')
flags.DEFINE_float('learning_rate', 3e-4, 'Adam learning rate (all methods; local.gin: 3e-4).')
flags.DEFINE_integer('target_update_period', 200, 'CQL target period (ours and d3rlpy).')
flags.DEFINE_float('cql_alpha', 0.05, "CQL's alpha (ours and d3rlpy; Table 2: 0.05).")
flags.DEFINE_integer('parallel', 2, 'Runs at a time.')
flags.DEFINE_integer('random_episodes', 300, 'Episodes of random play for the 0 of the score.')
flags.DEFINE_integer('reps', 1000, 'Bootstrap resamples of the reports.')
flags.DEFINE_bool('smoke', False, 'A tiny version of everything: 1 game, 1 seed, '
                  '2 x 2,000 steps of data, 100 updates, Figures 2-4 and d3rlpy.')
flags.DEFINE_bool('dry_run', False, 'Print the plan and its estimated cost, run nothing.')
FLAGS = flags.FLAGS

# method -> (gin file, extra gin bindings); all with local.gin after it.
METHODS = {
    'cql_vit': ('vit_none.gin', ()),
    'cql_vit_ts': ('vit_ts_none.gin', ()),
    'bc_vit': ('bc_vit.gin', ()),
    'bc_vit_ts': ('bc_vit_ts.gin', ()),
    'cql_convnet': ('convnet.gin', ()),
    'cql_vit_mean': ('vit_mean.gin', ()),
    'cql_vit_learned': ('vit_learned.gin', ()),
    'cql_vit_ts_mean': ('vit_ts_mean.gin', ()),
    'cql_vit_ts_learned': ('vit_ts_learned.gin', ()),
    'bc_convnet': ('bc_vit.gin', ("train_eval.backbone='convnet'",)),
}
D3RLPY_METHODS = {'d3rlpy_cql': 'cql', 'd3rlpy_bc': 'bc'}
FIGURES = {
    '2': ('cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts'),
    '3': ('cql_vit', 'cql_vit_ts', 'cql_convnet'),
    '4': ('cql_vit', 'cql_vit_mean', 'cql_vit_learned',
          'cql_vit_ts', 'cql_vit_ts_mean', 'cql_vit_ts_learned'),
}
EXTRA_METHODS = ('bc_convnet',)
SMOKE = dict(games=['MinAtar-Breakout'], seeds=1, iterations=2, steps_per_iteration=2000,
             fraction=0.5, train_steps=100, eval_interval=50, eval_steps=200,
             eval_max_episodes=5, random_episodes=50, reps=200, figures=['2', '3', '4'])
# The cost model of the docstring (seconds; updates per second).
RATE_OURS, START_OURS = 15.0, 30.0
RATE_D3RLPY, START_D3RLPY = 5.0, 25.0
EVAL_SECONDS_PER_1000_STEPS = 8.0
DATA_CPU_SECONDS_PER_STEP = 1.8e-3


# ------------------------------------------------------------------- the plan
def figure_methods(figure: str, d3rlpy: bool, extra) -> tuple:
  """Methods in figure `figure`'s report."""
  methods = FIGURES[figure]
  if figure == '2':
    methods += tuple(extra) + (tuple(D3RLPY_METHODS) if d3rlpy else ())
  return methods


def planned_methods(figures, d3rlpy: bool, extra) -> list:
  out = []
  for figure in figures:
    for method in figure_methods(figure, d3rlpy, extra):
      if method not in out:
        out.append(method)
  return out


def run_dir(root: str, game: str, method: str, seed: int) -> str:
  return os.path.join(root, 'runs', game, f'{method}_s{seed}')


def is_finished(path: str, train_steps: int) -> bool:
  return any(r['step'] >= train_steps for r in experiments.eval_records(path))


def estimate_seconds(methods, games, seeds, train_steps, eval_interval, eval_steps,
                     data_steps, parallel) -> dict:
  """The docstring's cost model for a plan."""
  evals = -(-train_steps // eval_interval)
  eval_s = evals * EVAL_SECONDS_PER_1000_STEPS * eval_steps / 1000
  ours = sum(1 for m in methods if m in METHODS) * len(games) * seeds
  d3 = sum(1 for m in methods if m in D3RLPY_METHODS) * len(games) * seeds
  ours_s = train_steps / RATE_OURS + START_OURS + eval_s
  d3_s = train_steps / RATE_D3RLPY + START_D3RLPY + eval_s
  data = data_steps * DATA_CPU_SECONDS_PER_STEP * max(1, len(games) / parallel) + 30
  total = (ours * ours_s + d3 * d3_s) / parallel + data + 120
  return dict(our_runs=ours, d3rlpy_runs=d3, our_run_s=ours_s, d3rlpy_run_s=d3_s,
              data_s=data, total_s=total)


# ------------------------------------------------------------------------ data
def generate_data(root: str, games) -> dict:
  """Logged replay per game (one generator process each, resumable); {game: replay_dir}."""
  data_root = os.path.join(root, 'data')
  jobs, dirs = [], {}
  for game in games:
    dirs[game] = os.path.join(data_root, game, '1', 'replay_logs')
    curve = _learning_curve(dirs[game])
    if curve is not None and len(curve['iterations']) >= FLAGS.iterations:
      continue
    jobs.append((f'data {game}', [
        'launch/generate_logged_replay.py', f'--root_dir={data_root}', f'--game={game}',
        f'--iterations={FLAGS.iterations}', f'--steps_per_iteration={FLAGS.steps_per_iteration}',
        '--progress_secs=60'], os.path.join(data_root, f'{game}.log')))
  if jobs:
    start = time.time()
    failed = experiments.run_scripts(jobs, parallel=FLAGS.parallel)
    if failed:
      sys.exit(f'paper_figures: data generation failed: {failed} (logs: {data_root}/*.log)')
    print(f'Logged replay generated in {(time.time() - start) / 60:.1f} min', flush=True)
  for game in games:
    curve = _learning_curve(dirs[game])
    returns = ' '.join(f'{row["mean_return"]:.2f}' for row in curve['iterations'])
    print(f'{game}: {dirs[game]}; online agent mean return per iteration: {returns}',
          flush=True)
  return dirs


def _learning_curve(replay_dir: str):
  path = os.path.join(os.path.dirname(replay_dir), 'learning_curve.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def dataset_average(replay_dir: str) -> float:
  """Average raw return of all the logged episodes (the generator's curve)."""
  rows = _learning_curve(replay_dir)['iterations']
  episodes = sum(r['episodes'] for r in rows)
  return float(sum(r['mean_return'] * r['episodes'] for r in rows) / max(episodes, 1))


def reference_scores(root: str, replay_dirs: dict) -> str:
  """`reference_scores.json` (random 0, dataset average 1) for the games outside Table 3."""
  from tf_offline_q.eval import normalization  # pylint: disable=g-import-not-at-top
  path = os.path.join(root, 'reference_scores.json')
  scores = normalization.load_reference_scores(path) if os.path.exists(path) else {}
  missing = [g for g in replay_dirs if g not in normalization.TABLE_3 and g not in scores]
  for game in missing:
    start = time.time()
    random = experiments.random_returns(game, FLAGS.random_episodes, FLAGS.max_episode_frames)
    scores[game] = normalization.ReferenceScores(
        random=float(np.mean(random)), dqn_replay=dataset_average(replay_dirs[game]))
    print(f'{game}: random play {scores[game].random:.3f} ({len(random)} episodes, '
          f'{time.time() - start:.0f}s), logged data average {scores[game].dqn_replay:.3f}',
          flush=True)
    if scores[game].dqn_replay <= scores[game].random:
      print(f'WARNING: {game}: the logged data average is not above random play, so its '
            'normalised scores are not meaningful (more --iterations, more --random_episodes?)',
            flush=True)
  if missing:
    normalization.write_reference_scores(path, scores)
  return path


# ------------------------------------------------------------------------ runs
def train_command(root, game, replay_dir, method, seed):
  gin_file, bindings = METHODS[method]
  lr = FLAGS.learning_rate
  return [
      'launch/train.py', f'--root_dir={run_dir(root, game, method, seed)}',
      f'--gin_file={gin_file}', '--gin_file=local.gin',
      f"--gin_bindings=train_eval.game='{game}'",
      f"--gin_bindings=train_eval.data_source='dopamine:{replay_dir}'",
      f"--gin_bindings=train_eval.method='{method}'",
      f'--gin_bindings=train_eval.seed={seed}',
      f'--gin_bindings=train_eval.fraction={FLAGS.fraction}',
      "--gin_bindings=train_eval.subset_mode='uniform'",
      f'--gin_bindings=train_eval.data_seed={FLAGS.data_seed}',
      f'--gin_bindings=train_eval.num_train_steps={FLAGS.train_steps}',
      f'--gin_bindings=train_eval.batch_size={FLAGS.batch_size}',
      f'--gin_bindings=train_eval.eval_interval={FLAGS.eval_interval}',
      f'--gin_bindings=train_eval.eval_steps={FLAGS.eval_steps}',
      f'--gin_bindings=train_eval.eval_max_episodes={FLAGS.eval_max_episodes}',
      f'--gin_bindings=train_eval.max_episode_frames={FLAGS.max_episode_frames}',
      '--gin_bindings=train_eval.eval_epsilon=0.001',
      '--gin_bindings=train_eval.sticky_action_prob=0.25',
      '--gin_bindings=train_eval.full_action_space=False',
      '--gin_bindings=train_eval.policy_save_interval=0',
      f'--gin_bindings=train_eval.checkpoint_interval={FLAGS.eval_interval}',
      f'--gin_bindings=CqlC51Agent.learning_rate={lr}',
      f'--gin_bindings=CqlC51Agent.cql_alpha={FLAGS.cql_alpha}',
      f'--gin_bindings=CqlC51Agent.target_update_period={FLAGS.target_update_period}',
      f'--gin_bindings=bc.BehavioralCloningAgent.learning_rate={lr}',
      *(f'--gin_bindings={b}' for b in bindings),
  ]


def transitions_path(root: str, game: str) -> str:
  return os.path.join(root, 'transitions',
                      f'{game}_f{FLAGS.fraction}_uniform_s{FLAGS.data_seed}_n3.npz')


def d3rlpy_command(root, game, replay_dir, method, seed):
  """`run_reference.py` with the settings of our runs (n_step 3: common.gin's)."""
  return [
      'bench/d3rlpy_reference/run_reference.py',
      f'--root_dir={run_dir(root, game, method, seed)}', f'--algo={D3RLPY_METHODS[method]}',
      f'--method={method}', f'--game={game}', f'--data_source=dopamine:{replay_dir}',
      f'--fraction={FLAGS.fraction}', '--subset_mode=uniform', f'--data_seed={FLAGS.data_seed}',
      '--n_step=3', f'--transitions={transitions_path(root, game)}', f'--seed={seed}',
      f'--batch_size={FLAGS.batch_size}', f'--num_train_steps={FLAGS.train_steps}',
      f'--learning_rate={FLAGS.learning_rate}', '--gamma=0.99',
      f'--target_update_period={FLAGS.target_update_period}', f'--cql_alpha={FLAGS.cql_alpha}',
      '--reward_clip=1.0', f'--eval_interval={FLAGS.eval_interval}',
      f'--eval_steps={FLAGS.eval_steps}', f'--eval_max_episodes={FLAGS.eval_max_episodes}',
      '--eval_epsilon=0.001', '--sticky_action_prob=0.25',
      f'--max_episode_frames={FLAGS.max_episode_frames}', '--nofull_action_space',
      f'--progress_steps={min(250, FLAGS.eval_interval)}', '--threads=1',
  ]


def prepare_d3rlpy(root: str, replay_dirs: dict):
  """The d3rlpy venv (made once) and each game's exported transitions."""
  from bench.d3rlpy_reference import export  # pylint: disable=g-import-not-at-top
  from bench.d3rlpy_reference import setup_venv  # pylint: disable=g-import-not-at-top
  start = time.time()
  setup_venv.ensure_venv()
  for game, replay_dir in replay_dirs.items():
    export.export(transitions_path(root, game), f'dopamine:{replay_dir}', FLAGS.fraction,
                  'uniform', FLAGS.data_seed, 3, game=game)
  print(f'd3rlpy environment and transitions ready ({time.time() - start:.0f}s)', flush=True)


class RunsProgress:
  """A line every `interval` s: runs finished of the plan, rate, ETA."""

  def __init__(self, paths, train_steps, interval=120.0):
    self._paths, self._steps = paths, train_steps
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)

  def _done(self):
    return sum(is_finished(p, self._steps) for p in self._paths)

  def _loop(self, interval):
    start, done0 = time.time(), self._done()
    while not self._stop.wait(interval):
      done = self._done()
      elapsed = time.time() - start
      rate = (done - done0) / elapsed if elapsed > 0 else 0
      eta = (len(self._paths) - done) / rate if rate > 0 else float('inf')
      print(f'== runs: {done}/{len(self._paths)} finished, {elapsed / 60:.0f} min, '
            f'ETA {progress_lib.format_duration(eta)}', flush=True)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def train_all(root: str, replay_dirs: dict, methods) -> list:
  """Every (game, method, seed) not finished yet; returns the failed ones."""
  jobs, paths, skipped = [], [], 0
  for seed in range(FLAGS.seeds):
    for game, replay_dir in replay_dirs.items():
      for method in methods:
        path = run_dir(root, game, method, seed)
        paths.append(path)
        if is_finished(path, FLAGS.train_steps):
          skipped += 1
          continue
        make = d3rlpy_command if method in D3RLPY_METHODS else train_command
        jobs.append((f'{game} {method} s{seed}', make(root, game, replay_dir, method, seed),
                     os.path.join(path, 'train.log')))
  print(f'Runs: {len(paths)} planned, {skipped} finished already, {len(jobs)} to run '
        f'({FLAGS.parallel} at a time; logs: RUN/train.log)', flush=True)
  if not jobs:
    return []
  with RunsProgress(paths, FLAGS.train_steps):
    return experiments.run_scripts(jobs, parallel=FLAGS.parallel, echo=False)


# --------------------------------------------------------------------- reports
def report(root: str, figure: str, games, methods, scores_path: str):
  """`launch/report.py` on the figure's finished runs; prints report.md."""
  runs = [run_dir(root, g, m, s) for m in methods for g in games for s in range(FLAGS.seeds)]
  runs = [r for r in runs if is_finished(r, FLAGS.train_steps)]
  if not runs:
    print(f'Figure {figure}: no finished run to report', flush=True)
    return
  output = os.path.join(root, 'report', f'figure{figure}')
  experiments.run_script('launch/report.py', *(f'--runs={r}' for r in runs),
                         f'--output_dir={output}', f'--reps={FLAGS.reps}',
                         f'--reference_scores={scores_path}', caller='paper_figures')
  with open(os.path.join(output, 'report.md')) as f:
    print(f'\n#### Figure {figure} ({", ".join(methods)})\n\n' + f.read(), flush=True)


def raw_table(root: str, games, methods, scores_path: str) -> str:
  """Final mean return per game and method (mean over seeds; the seeds listed)."""
  from tf_offline_q.eval import normalization  # pylint: disable=g-import-not-at-top
  scores = normalization.load_reference_scores(scores_path)
  lines = ['| game | method | final mean return (mean over seeds) | seeds | curve (step: mean) |',
           '| --- | --- | --- | --- | --- |']
  for game in games:
    ref = scores.get(game)
    if ref is not None:
      lines.append(f'| {game} | (random play) | {ref.random:.2f} | | |')
      lines.append(f'| {game} | (logged data average) | {ref.dqn_replay:.2f} | | |')
    for method in methods:
      finals, curve = [], collections.defaultdict(list)
      for seed in range(FLAGS.seeds):
        records = experiments.eval_records(run_dir(root, game, method, seed))
        if records and records[-1]['step'] >= FLAGS.train_steps:
          finals.append(records[-1]['mean_return'])
          for r in records:
            curve[r['step']].append(r['mean_return'])
      if not finals:
        lines.append(f'| {game} | {method} | (not run) | | |')
        continue
      text = ', '.join(f'{s}: {np.mean(v):.2f}' for s, v in sorted(curve.items()))
      lines.append(f'| {game} | {method} | {np.mean(finals):.2f} | '
                   f'{[round(x, 2) for x in finals]} | {text} |')
  return '\n'.join(lines)


# ------------------------------------------------------------------------ main
def main(argv):
  del argv
  console.quiet_third_party()
  if FLAGS.smoke:
    for name, value in SMOKE.items():
      if not FLAGS[name].present:
        setattr(FLAGS, name, value)
    if not FLAGS['root_dir'].present:
      FLAGS.root_dir = 'runs/paper_figures_smoke'
  unknown = set(FLAGS.figures) - set(FIGURES)
  if unknown:
    raise app.UsageError(f'--figures: unknown {sorted(unknown)}; choose from {sorted(FIGURES)}')
  bad = set(FLAGS.extra_methods) - set(EXTRA_METHODS)
  if bad:
    raise app.UsageError(f'--extra_methods: unknown {sorted(bad)}; choose from {EXTRA_METHODS}')
  if FLAGS.train_steps < 1 or FLAGS.eval_interval < 1 or FLAGS.seeds < 1:
    raise app.UsageError('--train_steps, --eval_interval and --seeds must be >= 1')
  from tf_offline_q.envs import games as games_lib  # pylint: disable=g-import-not-at-top
  try:
    games = [games_lib.canonical_game_name(g) for g in FLAGS.games]
  except ValueError as e:
    raise app.UsageError(f'--games: {e}') from e
  root = os.path.abspath(FLAGS.root_dir)
  methods = planned_methods(FLAGS.figures, FLAGS.d3rlpy, FLAGS.extra_methods)
  cost = estimate_seconds(methods, games, FLAGS.seeds, FLAGS.train_steps, FLAGS.eval_interval,
                          FLAGS.eval_steps, FLAGS.iterations * FLAGS.steps_per_iteration,
                          FLAGS.parallel)
  print(f'Plan: figures {",".join(FLAGS.figures)} on {", ".join(games)}; {FLAGS.seeds} seeds; '
        f'methods {", ".join(methods)}; {FLAGS.fraction:g} uniform subsets of '
        f'{FLAGS.iterations} x {FLAGS.steps_per_iteration} steps of logged replay; '
        f'{FLAGS.train_steps} updates, an evaluation every {FLAGS.eval_interval}.\n'
        f'Estimated cost (the docstring\'s model): {cost["our_runs"]} of our runs x '
        f'{cost["our_run_s"]:.0f}s + {cost["d3rlpy_runs"]} d3rlpy runs x '
        f'{cost["d3rlpy_run_s"]:.0f}s over {FLAGS.parallel} processes, + data '
        f'{cost["data_s"] / 60:.0f} min + reports: about {cost["total_s"] / 60:.0f} min '
        '(finished parts are skipped)', flush=True)
  if FLAGS.dry_run:
    return
  start = time.time()
  os.makedirs(root, exist_ok=True)
  replay_dirs = generate_data(root, games)
  scores_path = reference_scores(root, replay_dirs)
  if any(m in D3RLPY_METHODS for m in methods):
    prepare_d3rlpy(root, replay_dirs)
  train_start = time.time()
  failed = train_all(root, replay_dirs, methods)
  print(f'\nTraining finished in {(time.time() - train_start) / 60:.1f} min'
        + (f'; FAILED runs: {failed} (see their train.log)' if failed else ''), flush=True)
  for figure in FLAGS.figures:
    report(root, figure, games,
           figure_methods(figure, FLAGS.d3rlpy, FLAGS.extra_methods), scores_path)
  print('\n#### Raw returns at the final evaluation\n\n'
        + raw_table(root, games, methods, scores_path), flush=True)
  print(f'\nTotal wall time: {(time.time() - start) / 60:.1f} min; reports in '
        f'{os.path.join(root, "report")}', flush=True)


if __name__ == '__main__':
  app.run(main)
