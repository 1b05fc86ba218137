r"""The ViT paper's Figures 2-4 at CPU scale, on logged replay, beside d3rlpy on the same data.

  python bench/paper_figures.py --root_dir=runs/paper_figures            # the default plan
  python bench/paper_figures.py --root_dir=runs/paper_figures --figures=2,3,4   # + Figure 4
  python bench/paper_figures.py --root_dir=runs/paper_figures --sweep    # CQL tuning sweep
  python bench/paper_figures.py --root_dir=runs/paper_figures --cql_alpha=0.5 --nod3rlpy
                                                # the figures again at the sweep's best alpha
  python bench/paper_figures.py --smoke [--sweep]                         # a few minutes
  python bench/paper_figures.py --dry_run [--sweep]                       # plan and cost only

Steps (every one resumable: re-running the command skips what is done):

  1. data: logged replay like DQN-Replay, `launch/generate_logged_replay.py`
     (an online DQN learning each game, every transition it played written
     in order, one Dopamine checkpoint per iteration), for each of `--games`
     (default MinAtar-Breakout and MinAtar-SpaceInvaders, one process per
     game: games this online DQN learns within the budget; after 50K steps it
     still played Asterix at random level, 0.5 per episode against 0.48),
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
     A finished run (its last evaluation at its number of updates) is
     skipped, an unfinished one resumed by `train.py` / `run_reference.py`;
     a run directory that recorded other settings (`run_config.json`,
     `reference_config.json`) stops the plan before anything runs:
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

The figures at another CQL alpha or target period (e.g. the sweep's best,
`--cql_alpha=0.5`) go in the same `--root_dir`: those two settings, off their
defaults, are in the names of the CQL runs (`runs/{game}/cql_vit_cql_alpha0.5_s0`,
reported as `cql_vit alpha=0.5`) and of the reports (`report/figure2_cql_alpha0.5/`).
BC has neither, so such a plan reuses the data, the reference scores and the
BC runs already made. Other settings (learning rate, fraction, updates) change
every run: `--tag=NAME` puts such a variant's runs in `{root_dir}/runs_NAME/`
and its reports in `report/figure{N}_NAME/`, sharing the data and reference
scores (`--train_steps=6000 --tag=updates6000`).

The tuning sweep (`--sweep`, instead of the figures; issue 11: if CQL does
not beat BC, which setting holds it back?): `--sweep_method` (cql_vit) on
`--sweep_game` (default: the first of `--games`), `--sweep_seeds` seeds, one
factor at a time around the defaults. The defaults are the study's settings
above (the flags): Table 2's values where they fit this budget (alpha 0.05,
batch 32, n-step 3, gamma 0.99) and local.gin's CPU scaling elsewhere (Adam
3e-4 for Table 2's 1e-5, target period 200 for 2000, 10% of the data for 5%,
2,000 updates for 6.25M). The varied values (flags `--sweep_{factor}`, a
comma list; empty: factor left out; Table 2's value marked in the reports):

  cql_alpha             0.01, 0.5, 2.0
  learning_rate         1e-5 (Table 2), 1e-4, 1e-3
  target_update_period  50, 2000 (Table 2)
  train_steps           6000 (its learning curve also gives 1000 ... 5000)
  fraction              0.05 (Table 2), 0.3, 1.0

plus the defaults themselves (reported as `cql_vit defaults`) and BC at the
defaults (Figure 2's `bc_vit` runs: the same directories and commands as
the study's, so whichever of the two runs first does them for both). The
runs go to `{root_dir}/sweep/{game}/`, named in the reports after their
setting (`cql_vit alpha=0.5`, `cql_vit lr=1e-05 (Table 2)`, ...); the report
goes to `{root_dir}/report/sweep_{game}/`, beside `sweep.md`: final returns
per setting, saying which row is the defaults, which are Table 2's values,
and which setting scored best. Changing a default (`--cql_alpha`, ...) with
`--sweep` needs a new `--root_dir` (the directories are named by the varied
factor only; the recorded-settings check above stops a mixed sweep).

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

The sweep's estimate uses the same rates, plus, for fractions above 10%, the
extra transitions loaded into Reverb at ~5,300 transitions/s (README,
bench/pipeline.py): per seed 12 runs of 2,000 updates (~3 min each; fraction
1.0 ~17 s more), two of 6,000 (CQL and BC, ~8 min each) and bc_vit at the
defaults (~3 min, unless the study ran it): ~55 min for the default 2 seeds,
~83 min for 3, + data and reference scores (~6 min) if the study has not made
them. Measured on the idle machine, 2 at a time: 67-174 s per run of 2,000
updates, 248 s for one of 6,000 (the model is conservative there).
"""
import collections
import dataclasses
import json
import os
import re
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import experiments  # pylint: disable=g-import-not-at-top
from tf_offline_q import files  # pylint: disable=g-import-not-at-top
from tf_offline_q import progress as progress_lib  # pylint: disable=g-import-not-at-top


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the runs of a plan share (the flags of the same names); a sweep
  point changes one field."""
  fraction: float = 0.1
  data_seed: int = 0
  train_steps: int = 2000
  batch_size: int = 32
  learning_rate: float = 3e-4
  target_update_period: int = 200
  cql_alpha: float = 0.05
  eval_interval: int = 1000
  eval_steps: int = 1000
  eval_max_episodes: int = 30
  max_episode_frames: int = 2000

  @classmethod
  def from_flags(cls, f) -> 'Settings':
    return cls(**{field.name: f[field.name].value for field in dataclasses.fields(cls)})


DEFAULTS = Settings()
# method -> (gin file, extra gin bindings); all with local.gin after it.
METHODS = {
    'cql_vit': ('vit_none.gin', {}),
    'cql_vit_ts': ('vit_ts_none.gin', {}),
    'bc_vit': ('bc_vit.gin', {}),
    'bc_vit_ts': ('bc_vit_ts.gin', {}),
    'cql_convnet': ('convnet.gin', {}),
    'cql_vit_mean': ('vit_mean.gin', {}),
    'cql_vit_learned': ('vit_learned.gin', {}),
    'cql_vit_ts_mean': ('vit_ts_mean.gin', {}),
    'cql_vit_ts_learned': ('vit_ts_learned.gin', {}),
    'bc_convnet': ('bc_vit.gin', {'train_eval.backbone': 'convnet'}),
}
D3RLPY_METHODS = {'d3rlpy_cql': 'cql', 'd3rlpy_bc': 'bc'}
FIGURES = {
    '2': ('cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts'),
    '3': ('cql_vit', 'cql_vit_ts', 'cql_convnet'),
    '4': ('cql_vit', 'cql_vit_mean', 'cql_vit_learned',
          'cql_vit_ts', 'cql_vit_ts_mean', 'cql_vit_ts_learned'),
}
EXTRA_METHODS = ('bc_convnet',)
# The sweep: the CQL methods it can vary, each with its BC reference (same backbone).
SWEEP_METHODS = {'cql_vit': 'bc_vit', 'cql_vit_ts': 'bc_vit_ts', 'cql_convnet': 'bc_convnet'}
# factor (a Settings field) -> (short name in the reports, type, default values).
SWEEP_FACTORS = {
    'cql_alpha': ('alpha', float, ('0.01', '0.5', '2.0')),
    'learning_rate': ('lr', float, ('1e-5', '1e-4', '1e-3')),
    'target_update_period': ('target', int, ('50', '2000')),
    'train_steps': ('updates', int, ('6000',)),
    'fraction': ('fraction', float, ('0.05', '0.3', '1.0')),
}
# Swept factors BC is also run at, to compare like with like (BC at 6,000 updates).
SWEEP_BC_FACTORS = ('train_steps',)
# Table 2's values of the swept factors (common.gin); 6.25M updates = 100 x 62.5K.
# The factors only CQL runs depend on (BC runs at another value are the same runs).
CQL_ONLY_FACTORS = ('cql_alpha', 'target_update_period')
TABLE_2 = {'cql_alpha': 0.05, 'learning_rate': 1e-5, 'target_update_period': 2000,
           'train_steps': 6_250_000, 'fraction': 0.05}
SMOKE = dict(games=['MinAtar-Breakout'], seeds=1, iterations=2, steps_per_iteration=2000,
             fraction=0.5, train_steps=100, eval_interval=50, eval_steps=200,
             eval_max_episodes=5, random_episodes=50, reps=200, figures=['2', '3', '4'],
             sweep_seeds=1, sweep_cql_alpha=['0.5'], sweep_learning_rate=['1e-3'],
             sweep_target_update_period=['50'], sweep_train_steps=['200'],
             sweep_fraction=['1.0'])
# The cost model of the docstring (seconds; updates per second).
RATE_OURS, START_OURS = 15.0, 30.0
RATE_D3RLPY, START_D3RLPY = 5.0, 25.0
EVAL_SECONDS_PER_1000_STEPS = 8.0
DATA_CPU_SECONDS_PER_STEP = 1.8e-3
MEASURED_TRANSITIONS, LOAD_RATE = 10_000, 5_300.0   # START_OURS includes loading 10K
REFERENCE_AND_REPORT_SECONDS = 120.0


def define_flags(flag_values=flags.FLAGS):
  """Defines the flags (when run as a script, or on a test's own FlagValues)."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('root_dir', 'runs/paper_figures', 'Data, runs and reports.', **fv)
  flags.DEFINE_list('games', ['MinAtar-Breakout', 'MinAtar-SpaceInvaders'],
                    'MinAtar (or ALE) games (ones the online DQN learns in the data budget).',
                    **fv)
  flags.DEFINE_list('figures', ['2', '3'], 'Figures to run: any of 2, 3, 4.', **fv)
  flags.DEFINE_list('extra_methods', [], 'More methods for the reports: bc_convnet.', **fv)
  flags.DEFINE_bool('d3rlpy', True, "d3rlpy's DiscreteCQL and DiscreteBC on Figure 2's data.",
                    **fv)
  flags.DEFINE_integer('seeds', 3, 'Seeds per method and game.', **fv)
  flags.DEFINE_integer('iterations', 10, 'Logged replay: iterations (checkpoints) per game.', **fv)
  flags.DEFINE_integer('steps_per_iteration', 10_000, 'Logged replay: agent steps per iteration.',
                       **fv)
  flags.DEFINE_float('fraction', DEFAULTS.fraction, "Uniform subset of each game's logged replay.",
                     **fv)
  flags.DEFINE_integer('data_seed', DEFAULTS.data_seed, 'Seed of the subset.', **fv)
  flags.DEFINE_integer('train_steps', DEFAULTS.train_steps, 'Gradient updates per run.', **fv)
  flags.DEFINE_integer('eval_interval', DEFAULTS.eval_interval, 'Updates between evaluations.',
                       **fv)
  flags.DEFINE_integer('eval_steps', DEFAULTS.eval_steps,
                       'Agent steps per evaluation (paper: 125K).', **fv)
  flags.DEFINE_integer('eval_max_episodes', DEFAULTS.eval_max_episodes,
                       'Stop an evaluation after this many episodes.', **fv)
  flags.DEFINE_integer('max_episode_frames', DEFAULTS.max_episode_frames,
                       'Frame cap per evaluation episode.', **fv)
  flags.DEFINE_integer('batch_size', DEFAULTS.batch_size, 'Batch size (all methods, d3rlpy too).',
                       **fv)
  flags.DEFINE_float('learning_rate', DEFAULTS.learning_rate,
                     'Adam learning rate (all methods; local.gin: 3e-4; Table 2: 1e-5).', **fv)
  flags.DEFINE_integer('target_update_period', DEFAULTS.target_update_period,
                       'CQL target period (ours and d3rlpy; local.gin: 200; Table 2: 2000).', **fv)
  flags.DEFINE_float('cql_alpha', DEFAULTS.cql_alpha,
                     "CQL's alpha (ours and d3rlpy; Table 2: 0.05).", **fv)
  flags.DEFINE_integer('parallel', 2, 'Runs at a time.', **fv)
  flags.DEFINE_integer('random_episodes', 300, 'Episodes of random play for the 0 of the score.',
                       **fv)
  flags.DEFINE_integer('reps', 1000, 'Bootstrap resamples of the reports.', **fv)
  flags.DEFINE_string('tag', '', 'A variant of the figures at other settings than the runs in '
                      'runs/ (e.g. --train_steps): its runs go to {root_dir}/runs_{tag}/, its '
                      'reports to report/figure{N}_{tag}/; data and reference scores are shared.',
                      **fv)
  flags.DEFINE_bool('sweep', False, 'Run the CQL tuning sweep (one factor at a time around the '
                    'defaults, see the docstring) instead of the figures.', **fv)
  flags.DEFINE_string('sweep_game', None, 'Game of the sweep (default: the first of --games).',
                      **fv)
  flags.DEFINE_enum('sweep_method', 'cql_vit', list(SWEEP_METHODS), 'The CQL method swept.', **fv)
  flags.DEFINE_integer('sweep_seeds', 2, 'Seeds per sweep setting.', **fv)
  for factor, (short, _, values) in SWEEP_FACTORS.items():
    flags.DEFINE_list(f'sweep_{factor}', list(values),
                      f'Sweep: values of {factor} ({short} in the reports; Table 2: '
                      f'{TABLE_2[factor]:g}); empty: not varied.', **fv)
  flags.DEFINE_bool('smoke', False, 'A tiny version of everything: 1 game, 1 seed, 2 x 2,000 '
                    'steps of data, 100 updates, Figures 2-4 and d3rlpy (or a one-value-per-'
                    'factor sweep).', **fv)
  flags.DEFINE_bool('dry_run', False, 'Print the plan and its estimated cost, run nothing.', **fv)


class PlanError(ValueError):
  """A plan that cannot run as asked (e.g. run directories with other settings)."""


class PlannedRun(NamedTuple):
  game: str
  method: str              # the name in the reports (run.json's "method")
  seed: int
  path: str                # the run directory
  command: List[str]       # launch/train.py or run_reference.py, repository-relative
  settings: Settings
  kind: str                # 'ours' or 'd3rlpy'


class SweepPoint(NamedTuple):
  factor: Optional[str]    # a Settings field; None: the defaults
  value: Any
  settings: Settings
  suffix: str              # run-directory name part: 'defaults', 'cql_alpha0.5'
  label: str               # after the method in the reports: 'defaults', 'alpha=0.5'
  role: str                # 'defaults', "Table 2's value" or ''


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


def replay_dir(root: str, game: str) -> str:
  """Where `generate_data` writes `game`'s logged replay."""
  return os.path.join(root, 'data', game, '1', 'replay_logs')


def is_bc(method: str) -> bool:
  """Whether `method` (or its label, 'bc_vit lr=0.0001') is a BC method."""
  return method.startswith(('bc_', 'd3rlpy_bc'))


def changed_factors(settings: Settings, method: Optional[str] = None) -> List[str]:
  """CQL's own settings (alpha, target period) where `settings` differ from
  DEFAULTS; none for a BC method (BC has neither, so its runs are shared)."""
  if method and is_bc(method):
    return []
  return [factor for factor in CQL_ONLY_FACTORS
          if getattr(settings, factor) != getattr(DEFAULTS, factor)]


def settings_suffix(settings: Settings, method: Optional[str] = None) -> str:
  """Run-directory and report-name part of the changed factors: 'cql_alpha0.5'."""
  return '_'.join(f'{f}{getattr(settings, f):g}' for f in changed_factors(settings, method))


def settings_label(settings: Settings, method: Optional[str] = None) -> str:
  """`method` as named in the reports: 'cql_vit alpha=0.5' ('cql_vit' at the defaults)."""
  parts = [f'{SWEEP_FACTORS[f][0]}={getattr(settings, f):g}'
           for f in changed_factors(settings, method)]
  return ' '.join([method or ''] + parts).strip()


def run_dir(root: str, game: str, method: str, seed: int,
            settings: Settings = DEFAULTS, tag: str = '') -> str:
  """`{root}/runs/{game}/{method}_s{seed}`; CQL's alpha and target period, if
  off the defaults, are in a CQL run's name (`cql_vit_cql_alpha0.5_s0`), so a
  study at another alpha reuses the data, the reference scores and the BC runs.
  Other settings change every run: a `tag` keeps such a variant's runs apart,
  in `{root}/runs_{tag}/` (the data and reference scores still shared)."""
  suffix = settings_suffix(settings, method)
  return os.path.join(root, f'runs_{tag}' if tag else 'runs', game,
                      f'{method}_{suffix}_s{seed}' if suffix else f'{method}_s{seed}')


def transitions_path(root: str, game: str, settings: Settings) -> str:
  return os.path.join(root, 'transitions', f'{game}_f{settings.fraction}_uniform_'
                      f's{settings.data_seed}_n3.npz')


def our_run(root: str, game: str, method: str, seed: int, settings: Settings,
            label: Optional[str] = None, path: Optional[str] = None,
            tag: str = '') -> PlannedRun:
  """A `launch/train.py` run of `method` (METHODS); `label` names it in the
  reports (default `method`), `path` is its directory (default `run_dir`)."""
  label = label or settings_label(settings, method)
  path = path or run_dir(root, game, method, seed, settings, tag)
  gin_file, extra = METHODS[method]
  s = settings
  bindings = experiments.dopamine_run_bindings(
      game, replay_dir(root, game), label, seed, train_steps=s.train_steps,
      batch_size=s.batch_size, learning_rate=s.learning_rate,
      target_update_period=s.target_update_period, eval_interval=s.eval_interval,
      eval_steps=s.eval_steps, eval_max_episodes=s.eval_max_episodes,
      max_episode_frames=s.max_episode_frames, checkpoint_interval=s.eval_interval)
  bindings.update({'train_eval.fraction': s.fraction, 'train_eval.subset_mode': 'uniform',
                   'train_eval.data_seed': s.data_seed, 'CqlC51Agent.cql_alpha': s.cql_alpha})
  bindings.update(extra)
  command = experiments.train_command(path, [gin_file, 'local.gin'], bindings)
  return PlannedRun(game, label, seed, path, command, settings, 'ours')


def d3rlpy_run(root: str, game: str, method: str, seed: int, settings: Settings,
               tag: str = '') -> PlannedRun:
  """`run_reference.py` with the settings of our runs (n_step 3: common.gin's)."""
  s, path = settings, run_dir(root, game, method, seed, settings, tag)
  command = [
      'bench/d3rlpy_reference/run_reference.py',
      f'--root_dir={path}', f'--algo={D3RLPY_METHODS[method]}',
      f'--method={settings_label(settings, method)}', f'--game={game}',
      f'--data_source=dopamine:{replay_dir(root, game)}',
      f'--fraction={s.fraction}', '--subset_mode=uniform', f'--data_seed={s.data_seed}',
      '--n_step=3', f'--transitions={transitions_path(root, game, s)}', f'--seed={seed}',
      f'--batch_size={s.batch_size}', f'--num_train_steps={s.train_steps}',
      f'--learning_rate={s.learning_rate}', '--gamma=0.99',
      f'--target_update_period={s.target_update_period}', f'--cql_alpha={s.cql_alpha}',
      '--reward_clip=1.0', f'--eval_interval={s.eval_interval}',
      f'--eval_steps={s.eval_steps}', f'--eval_max_episodes={s.eval_max_episodes}',
      '--eval_epsilon=0.001', '--sticky_action_prob=0.25',
      f'--max_episode_frames={s.max_episode_frames}', '--nofull_action_space',
      f'--progress_steps={min(250, s.eval_interval)}', '--threads=1',
  ]
  return PlannedRun(game, settings_label(settings, method), seed, path, command, settings,
                    'd3rlpy')


def figure_runs(root: str, figures: Sequence[str], games: Sequence[str], seeds: int,
                settings: Settings, d3rlpy: bool = True, extra=(),
                tag: str = '') -> List[PlannedRun]:
  """Every run of the figures' plan: seed by seed, game by game, method by method."""
  runs = []
  for seed in range(seeds):
    for game in games:
      for method in planned_methods(figures, d3rlpy, extra):
        make = d3rlpy_run if method in D3RLPY_METHODS else our_run
        runs.append(make(root, game, method, seed, settings, tag=tag))
  return runs


def parse_sweep_values(name: str, texts: Sequence[str]) -> List[Any]:
  """The values of `--sweep_{name}`; errors name the flag and the bad value."""
  _, kind, _ = SWEEP_FACTORS[name]
  values = []
  for text in texts:
    try:
      value = float(text)
    except ValueError:
      raise PlanError(f'--sweep_{name}: {text!r} is not a number') from None
    if kind is int:
      if value != int(value):
        raise PlanError(f'--sweep_{name}: {text!r} is not a whole number')
      value = int(value)
    low_ok = value > 0 if name != 'cql_alpha' else value >= 0
    if not low_ok or (name == 'fraction' and value > 1) or value != value:
      raise PlanError(f'--sweep_{name}: {text!r} is out of range (fraction: (0, 1]; cql_alpha: '
                      '>= 0; the rest: > 0)')
    values.append(value)
  return values


def sweep_points(centre: Settings, values: Mapping[str, Sequence[Any]]) -> List[SweepPoint]:
  """The defaults, then one point per (factor, value) with only that factor
  changed; a value equal to the default is the defaults point (left out)."""
  points = [SweepPoint(None, None, centre, 'defaults', 'defaults', 'defaults')]
  for factor in SWEEP_FACTORS:
    short = SWEEP_FACTORS[factor][0]
    for value in values.get(factor, ()):
      if value == getattr(centre, factor):
        continue
      table_2 = value == TABLE_2[factor]
      points.append(SweepPoint(
          factor, value, dataclasses.replace(centre, **{factor: value}), f'{factor}{value:g}',
          f'{short}={value:g}' + (' (Table 2)' if table_2 else ''),
          "Table 2's value" if table_2 else ''))
  return points


def sweep_runs(root: str, game: str, method: str, seeds: int, points: Sequence[SweepPoint]
               ) -> List[PlannedRun]:
  """Each point of the sweep with `seeds` seeds, seed by seed, plus BC
  (SWEEP_METHODS[method]) at the defaults (the study's own run directories)
  and at each point of SWEEP_BC_FACTORS (more updates for CQL: for BC too)."""
  runs, bc = [], SWEEP_METHODS[method]
  for seed in range(seeds):
    for point in points:
      path = os.path.join(root, 'sweep', game, f'{method}_{point.suffix}_s{seed}')
      runs.append(our_run(root, game, method, seed, point.settings,
                          label=f'{method} {point.label}', path=path))
    runs.append(our_run(root, game, bc, seed, points[0].settings))
    for point in (p for p in points if p.factor in SWEEP_BC_FACTORS):
      path = os.path.join(root, 'sweep', game, f'{bc}_{point.suffix}_s{seed}')
      runs.append(our_run(root, game, bc, seed, point.settings, label=f'{bc} {point.label}',
                          path=path))
  return runs


def is_finished(path: str, train_steps: int) -> bool:
  return any(r['step'] >= train_steps for r in experiments.eval_records(path))


def recorded_conflicts(run: PlannedRun) -> List[str]:
  """Settings `run.path` recorded (train.py's run_config.json, run_reference.py's
  reference_config.json) that differ from the plan's; [] for a new directory."""
  s = run.settings
  if run.kind == 'd3rlpy':
    path, section = os.path.join(run.path, 'reference_config.json'), 'settings'
    expected = {'game': run.game, 'fraction': s.fraction, 'data_seed': s.data_seed,
                'seed': run.seed, 'batch_size': s.batch_size,
                'learning_rate': s.learning_rate, 'cql_alpha': s.cql_alpha,
                'target_update_period': s.target_update_period}
  else:
    path, section = os.path.join(run.path, 'run_config.json'), 'fixed'
    expected = {'game': run.game, 'fraction': s.fraction, 'data_seed': s.data_seed,
                'seed': run.seed, 'batch_size': s.batch_size,
                'CqlC51Agent.learning_rate': s.learning_rate,
                'CqlC51Agent.cql_alpha': s.cql_alpha,
                'CqlC51Agent.target_update_period': s.target_update_period,
                'BehavioralCloningAgent.learning_rate': s.learning_rate}
  if is_bc(run.method):                  # BC runs at another alpha are the same runs
    expected = {k: v for k, v in expected.items() if not k.endswith(CQL_ONLY_FACTORS)}
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      recorded = json.load(f)[section]
  except (OSError, ValueError, KeyError, TypeError) as e:
    return [f'{path} is unreadable ({e!r})']
  return [f'{name}: {recorded[name]!r} recorded, {value!r} planned'
          for name, value in expected.items() if name in recorded and recorded[name] != value]


def pending(runs: Sequence[PlannedRun]) -> Tuple[List[PlannedRun], List[PlannedRun]]:
  """(runs to start or resume, finished runs); raises PlanError, listing every
  run directory that recorded other settings than the plan's."""
  conflicts = []
  for run in runs:
    found = recorded_conflicts(run)
    if found:
      conflicts.append(f'  {run.path}: ' + '; '.join(found))
  if conflicts:
    raise PlanError('these run directories were started with other settings than this plan '
                    "gives them (the flags changed since?):\n" + '\n'.join(conflicts) +
                    '\nRun with the settings they were started with, or use another --root_dir '
                    '(or, for the figures, a --tag).')
  finished = [r for r in runs if is_finished(r.path, r.settings.train_steps)]
  return [r for r in runs if r not in finished], finished


def run_seconds(run: PlannedRun, data_steps: int) -> float:
  """The docstring's cost model for one run."""
  s = run.settings
  evals = -(-s.train_steps // s.eval_interval)
  eval_s = evals * EVAL_SECONDS_PER_1000_STEPS * s.eval_steps / 1000
  if run.kind == 'd3rlpy':
    return s.train_steps / RATE_D3RLPY + START_D3RLPY + eval_s
  extra_load = max(0.0, s.fraction * data_steps - MEASURED_TRANSITIONS) / LOAD_RATE
  return s.train_steps / RATE_OURS + START_OURS + extra_load + eval_s


def estimate_seconds(runs: Sequence[PlannedRun], data_steps: int, data_games: int,
                     parallel: int) -> Dict[str, float]:
  """The docstring's cost model for `runs` and `data_games` games of data to generate."""
  train = sum(run_seconds(r, data_steps) for r in runs) / parallel
  data = (data_steps * DATA_CPU_SECONDS_PER_STEP * max(1, data_games / parallel) + 30
          if data_games else 0.0)
  return dict(train_s=train, data_s=data, total_s=train + data + REFERENCE_AND_REPORT_SECONDS)


def data_is_complete(root: str, game: str, iterations: int) -> bool:
  curve = _learning_curve(replay_dir(root, game))
  return curve is not None and len(curve['iterations']) >= iterations


# ------------------------------------------------------------------------ data
def generate_data(root: str, games, f) -> Dict[str, str]:
  """Logged replay per game (one generator process each, resumable); {game: replay_dir}."""
  data_root = os.path.join(root, 'data')
  jobs = []
  for game in games:
    if data_is_complete(root, game, f.iterations):
      continue
    jobs.append((f'data {game}', [
        'launch/generate_logged_replay.py', f'--root_dir={data_root}', f'--game={game}',
        f'--iterations={f.iterations}', f'--steps_per_iteration={f.steps_per_iteration}',
        '--progress_secs=60'], os.path.join(data_root, f'{game}.log')))
  if jobs:
    start = time.time()
    failed = experiments.run_scripts(jobs, parallel=f.parallel)
    if failed:
      sys.exit(f'paper_figures: data generation failed: {failed} (logs: {data_root}/*.log)')
    print(f'Logged replay generated in {(time.time() - start) / 60:.1f} min', flush=True)
  dirs = {game: replay_dir(root, game) for game in games}
  for game in games:
    curve = _learning_curve(dirs[game])
    returns = ' '.join(f'{row["mean_return"]:.2f}' for row in curve['iterations'])
    print(f'{game}: {dirs[game]}; online agent mean return per iteration: {returns}',
          flush=True)
  return dirs


def _learning_curve(replay: str):
  path = os.path.join(os.path.dirname(replay), 'learning_curve.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def dataset_average(replay: str) -> float:
  """Average raw return of all the logged episodes (the generator's curve)."""
  rows = _learning_curve(replay)['iterations']
  episodes = sum(r['episodes'] for r in rows)
  return float(sum(r['mean_return'] * r['episodes'] for r in rows) / max(episodes, 1))


def reference_scores(root: str, replay_dirs: dict, f) -> str:
  """`reference_scores.json` (random 0, dataset average 1) for the games outside Table 3."""
  from tf_offline_q.eval import normalization  # pylint: disable=g-import-not-at-top
  path = os.path.join(root, 'reference_scores.json')
  scores = normalization.load_reference_scores(path) if os.path.exists(path) else {}
  missing = [g for g in replay_dirs if g not in normalization.TABLE_3 and g not in scores]
  for game in missing:
    start = time.time()
    random = experiments.random_returns(game, f.random_episodes, f.max_episode_frames)
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
def prepare_d3rlpy(root: str, runs: Sequence[PlannedRun]):
  """The d3rlpy venv (made once) and the exported transitions of the d3rlpy runs."""
  from bench.d3rlpy_reference import export  # pylint: disable=g-import-not-at-top
  from bench.d3rlpy_reference import setup_venv  # pylint: disable=g-import-not-at-top
  start = time.time()
  setup_venv.ensure_venv()
  done = set()
  for run in runs:
    path = transitions_path(root, run.game, run.settings)
    if run.kind != 'd3rlpy' or path in done:
      continue
    done.add(path)
    export.export(path, f'dopamine:{replay_dir(root, run.game)}', run.settings.fraction,
                  'uniform', run.settings.data_seed, 3, game=run.game)
  print(f'd3rlpy environment and transitions ready ({time.time() - start:.0f}s)', flush=True)


class RunsProgress:
  """A line every `interval` s: runs finished of the plan, rate, ETA."""

  def __init__(self, runs: Sequence[PlannedRun], interval=120.0):
    self._runs = runs
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)

  def _done(self):
    return sum(is_finished(r.path, r.settings.train_steps) for r in self._runs)

  def _loop(self, interval):
    start, done0 = time.time(), self._done()
    while not self._stop.wait(interval):
      done = self._done()
      elapsed = time.time() - start
      rate = (done - done0) / elapsed if elapsed > 0 else 0
      eta = (len(self._runs) - done) / rate if rate > 0 else float('inf')
      print(f'== runs: {done}/{len(self._runs)} finished, {elapsed / 60:.0f} min, '
            f'ETA {progress_lib.format_duration(eta)}', flush=True)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def train_all(runs: Sequence[PlannedRun], parallel: int) -> list:
  """Every run not finished yet (resumed where it stopped); returns the failed ones."""
  to_run, finished = pending(runs)
  print(f'Runs: {len(runs)} planned, {len(finished)} finished already, {len(to_run)} to run '
        f'({parallel} at a time; logs: RUN/train.log)', flush=True)
  if not to_run:
    return []
  jobs = [(f'{r.game} {r.method} s{r.seed}', r.command, os.path.join(r.path, 'train.log'))
          for r in to_run]
  with RunsProgress(runs):
    return experiments.run_scripts(jobs, parallel=parallel, echo=False)


# --------------------------------------------------------------------- reports
def report(root: str, name: str, runs: Sequence[PlannedRun], scores_path: str, reps: int):
  """`launch/report.py` on the finished `runs` into {root}/report/{name}/; prints report.md."""
  paths = [r.path for r in runs if is_finished(r.path, r.settings.train_steps)]
  methods = list(dict.fromkeys(r.method for r in runs))
  if not paths:
    print(f'{name}: no finished run to report', flush=True)
    return
  output = os.path.join(root, 'report', name)
  experiments.run_script('launch/report.py', *(f'--runs={p}' for p in paths),
                         f'--output_dir={output}', f'--reps={reps}',
                         f'--reference_scores={scores_path}', caller='paper_figures')
  with open(os.path.join(output, 'report.md')) as f:
    print(f'\n#### {name} ({", ".join(methods)})\n\n' + f.read(), flush=True)


def final_returns(runs: Sequence[PlannedRun]) -> Dict[Tuple[str, str], Dict[str, Any]]:
  """{(game, method): {'finals': final mean return per finished seed,
  'curve': {step: [mean return per seed]}}}, in the runs' order."""
  out = collections.OrderedDict()
  for run in runs:
    entry = out.setdefault((run.game, run.method), {'finals': [], 'curve': {}})
    records = experiments.eval_records(run.path)
    if records and records[-1]['step'] >= run.settings.train_steps:
      entry['finals'].append(records[-1]['mean_return'])
      for r in records:
        entry['curve'].setdefault(r['step'], []).append(r['mean_return'])
  return out


def raw_table(runs: Sequence[PlannedRun], scores_path: str) -> str:
  """Final mean return per game and method (mean over seeds; the seeds listed)."""
  from tf_offline_q.eval import normalization  # pylint: disable=g-import-not-at-top
  scores = normalization.load_reference_scores(scores_path)
  lines = ['| game | method | final mean return (mean over seeds) | seeds | curve (step: mean) |',
           '| --- | --- | --- | --- | --- |']
  results = final_returns(runs)
  for game in dict.fromkeys(g for g, _ in results):
    ref = scores.get(game)
    if ref is not None:
      lines.append(f'| {game} | (random play) | {ref.random:.2f} | | |')
      lines.append(f'| {game} | (logged data average) | {ref.dqn_replay:.2f} | | |')
    for (g, method), entry in results.items():
      if g != game:
        continue
      if not entry['finals']:
        lines.append(f'| {game} | {method} | (not run) | | |')
        continue
      text = ', '.join(f'{s}: {np.mean(v):.2f}' for s, v in sorted(entry['curve'].items()))
      lines.append(f'| {game} | {method} | {np.mean(entry["finals"]):.2f} | '
                   f'{[round(x, 2) for x in entry["finals"]]} | {text} |')
  return '\n'.join(lines)


def describe_defaults(s: Settings) -> str:
  """The defaults of a sweep, each beside Table 2's value."""
  parts = []
  for factor in SWEEP_FACTORS:
    value, table = getattr(s, factor), TABLE_2[factor]
    parts.append(f'{factor} {value:g} ' + ('(= Table 2)' if value == table else
                                           f'(Table 2: {table:g})'))
  return ', '.join(parts) + f', batch {s.batch_size}' + (
      ' (= Table 2)' if s.batch_size == 32 else ' (Table 2: 32)') + ', n-step 3 (= Table 2)'


def sweep_table(runs: Sequence[PlannedRun], method: str, points: Sequence[SweepPoint]) -> str:
  """sweep.md: final mean return per setting, what each row is, the best setting."""
  results = final_returns(runs)
  game = runs[0].game
  bc = settings_label(points[0].settings, SWEEP_METHODS[method])
  lines = [f'Sweep of {method} on {game}. The defaults: {describe_defaults(points[0].settings)}.',
           '', '| setting | what it is | final mean return (mean over seeds) | seeds | '
           'minus the defaults |', '| --- | --- | --- | --- | --- |']
  base = results.get((game, f'{method} defaults'), {'finals': []})['finals']
  scored = []
  for point in points:
    name = f'{method} {point.label}'
    finals = results.get((game, name), {'finals': []})['finals']
    what = ('the defaults' if point.factor is None else
            f'{point.factor} {point.value:g}' + (f', {point.role}' if point.role else ''))
    if not finals:
      lines.append(f'| {name} | {what} | (not run) | | |')
      continue
    scored.append((float(np.mean(finals)), name))
    delta = (f'{np.mean(finals) - np.mean(base):+.2f}' if base and point.factor else '')
    lines.append(f'| {name} | {what} | {np.mean(finals):.2f} | '
                 f'{[round(x, 2) for x in finals]} | {delta} |')
  bc_rows = [(bc, 'BC at the defaults (Figure 2\'s runs)', None)] + [
      (f'{bc} {p.label}', f'BC at {p.factor} {p.value:g}', p) for p in points
      if p.factor in SWEEP_BC_FACTORS]
  bc_means = {}
  for name, what, point in bc_rows:
    finals = results.get((game, name), {'finals': []})['finals']
    if finals:
      bc_means[None if point is None else f'{method} {point.label}'] = np.mean(finals)
    lines.append(f'| {name} | {what} | ' + (
        f'{np.mean(finals):.2f} | {[round(x, 2) for x in finals]} | |' if finals
        else '(not run) | | |'))
  if scored:
    best, name = max(scored)
    bc_at_best = bc_means.get(name, bc_means.get(None))
    bc_name = bc if name not in bc_means else f'{bc} {name[len(method) + 1:]}'
    lines += ['', f'Best setting found (highest mean final return): `{name}`, {best:.2f}; '
              + (f'the defaults: {np.mean(base):.2f}; ' if base else 'the defaults: not run; ')
              + (f'{bc_name}: {bc_at_best:.2f}.' if bc_at_best is not None
                 else f'{bc_name}: not run.')
              + ' With so few seeds, read the IQM and 95% CIs of report.md before calling a '
              'difference real.']
  return '\n'.join(lines)


# ------------------------------------------------------------------------ main
def apply_smoke(f):
  """--smoke: the tiny settings, for every flag not given on the command line."""
  for name, value in SMOKE.items():
    if not f[name].present:
      setattr(f, name, value)
  if not f['root_dir'].present:
    f.root_dir = 'runs/paper_figures_smoke'


def check_games(names: Sequence[str], flag: str) -> List[str]:
  """Canonical names of MinAtar / ALE games; UsageError naming `flag` otherwise."""
  from tf_offline_q.envs import continuous  # pylint: disable=g-import-not-at-top
  from tf_offline_q.envs import games as games_lib  # pylint: disable=g-import-not-at-top
  out = []
  for name in names:
    try:
      game = games_lib.canonical_game_name(name)
    except ValueError as e:
      raise app.UsageError(f'{flag}: {e}') from e
    if continuous.is_continuous_env(game):
      raise app.UsageError(f'{flag}: {game} is a continuous-control environment; this study '
                           'needs MinAtar or ALE games')
    out.append(game)
  if not out:
    raise app.UsageError(f'{flag}: give at least one game')
  return out


def make_plan(f) -> Dict[str, Any]:
  """The plan of the flags `f` (nothing read from disk, nothing run).

  Returns:
    {'runs': [PlannedRun], 'games': [game], 'reports': [(name, [PlannedRun])],
     'sweep': None or {'method', 'points'}, 'root': absolute root_dir}.
  Raises:
    app.UsageError: an unknown figure, method or game, a bad number.
  """
  unknown = set(f.figures) - set(FIGURES)
  if unknown and not f.sweep:
    raise app.UsageError(f'--figures: unknown {sorted(unknown)}; choose from {sorted(FIGURES)}')
  bad = set(f.extra_methods) - set(EXTRA_METHODS)
  if bad:
    raise app.UsageError(f'--extra_methods: unknown {sorted(bad)}; choose from {EXTRA_METHODS}')
  if min(f.train_steps, f.eval_interval, f.seeds, f.sweep_seeds, f.parallel) < 1:
    raise app.UsageError('--train_steps, --eval_interval, --seeds, --sweep_seeds and '
                         '--parallel must be >= 1')
  if not 0 < f.fraction <= 1:
    raise app.UsageError(f'--fraction must be in (0, 1], got {f.fraction}')
  if f.tag and not re.fullmatch(r'[A-Za-z0-9_.=-]+', f.tag):
    raise app.UsageError(f'--tag: {f.tag!r} is not a plain name (letters, digits, _ . = -)')
  if f.tag and f.sweep:
    raise app.UsageError('--tag is for the figures; a sweep at other defaults needs another '
                         '--root_dir')
  root = os.path.abspath(f.root_dir)
  settings = Settings.from_flags(f)
  if f.sweep:
    games = check_games([f.sweep_game or f.games[0]], '--sweep_game' if f.sweep_game
                        else '--games')
    try:
      values = {factor: parse_sweep_values(factor, f[f'sweep_{factor}'].value)
                for factor in SWEEP_FACTORS}
    except PlanError as e:
      raise app.UsageError(str(e)) from e
    points = sweep_points(settings, values)
    runs = sweep_runs(root, games[0], f.sweep_method, f.sweep_seeds, points)
    return dict(runs=runs, games=games, root=root, reports=[(f'sweep_{games[0]}', runs)],
                sweep=dict(method=f.sweep_method, points=points))
  games = check_games(f.games, '--games')
  runs = figure_runs(root, f.figures, games, f.seeds, settings, f.d3rlpy, f.extra_methods,
                     tag=f.tag)
  reports, suffix = [], '_'.join(filter(None, [settings_suffix(settings), f.tag]))
  for figure in f.figures:
    labels = {settings_label(settings, m)
              for m in figure_methods(figure, f.d3rlpy, f.extra_methods)}
    reports.append((f'figure{figure}' + (f'_{suffix}' if suffix else ''),
                    [r for r in runs if r.method in labels]))
  return dict(runs=runs, games=games, root=root, reports=reports, sweep=None)


def print_plan(plan: Dict[str, Any], f) -> None:
  """The plan, what is done of it, and its estimated cost; every run with --dry_run."""
  runs, games, root = plan['runs'], plan['games'], plan['root']
  s = runs[0].settings
  data_steps = f.iterations * f.steps_per_iteration
  methods = list(dict.fromkeys(r.method for r in runs))
  seeds = len({r.seed for r in runs})
  if plan['sweep']:
    bc_also = ''.join(f' and at {p.label}' for p in plan['sweep']['points']
                      if p.factor in SWEEP_BC_FACTORS)
    sweep = plan['sweep']
    head = (f'Plan: sweep of {sweep["method"]} on {games[0]}, {seeds} seeds, '
            f'{len(sweep["points"])} settings + {SWEEP_METHODS[sweep["method"]]} '
            f'at the defaults{bc_also}.\nDefaults: '
            f'{describe_defaults(sweep["points"][0].settings)}.\nSettings: {", ".join(methods)}')
  else:
    head = (f'Plan: figures {",".join(f.figures)} on {", ".join(games)}; {seeds} seeds; '
            f'methods {", ".join(methods)}; {s.fraction:g} uniform subsets of '
            f'{f.iterations} x {f.steps_per_iteration} steps of logged replay; '
            f'{s.train_steps} updates, an evaluation every {s.eval_interval}.')
  to_run, finished = pending(runs)
  missing = [g for g in games if not data_is_complete(root, g, f.iterations)]
  whole = estimate_seconds(runs, data_steps, len(games), f.parallel)
  left = estimate_seconds(to_run, data_steps, len(missing), f.parallel)
  ours = [r for r in runs if r.kind == 'ours']
  d3 = [r for r in runs if r.kind == 'd3rlpy']
  print(head + f'\n{len(runs)} runs ({len(ours)} of ours'
        + (f' x {run_seconds(ours[0], data_steps):.0f}s' if len({r.settings for r in ours}) == 1
           else '') + (f', {len(d3)} d3rlpy x {run_seconds(d3[0], data_steps):.0f}s' if d3 else '')
        + f') over {f.parallel} processes.\n'
        f"Estimated cost (the docstring's model, from the rates measured there): about "
        f'{whole["total_s"] / 60:.0f} min for the whole plan (runs {whole["train_s"] / 60:.0f} '
        f'min, data {whole["data_s"] / 60:.0f} min, reference scores and reports '
        f'{REFERENCE_AND_REPORT_SECONDS / 60:.0f} min); {len(finished)} runs finished already, '
        f'{len(to_run)} to run, data missing for {len(missing)} of {len(games)} games: about '
        f'{left["total_s"] / 60:.0f} min left.', flush=True)
  if f.dry_run:
    done = {r.path for r in finished}
    started = {r.path for r in to_run if os.path.isdir(r.path)}
    for r in runs:
      status = 'finished' if r.path in done else 'resume' if r.path in started else 'to run'
      print(f'  {r.game} | {r.method} | s{r.seed} | {r.settings.train_steps} updates | '
            f'~{run_seconds(r, data_steps) / 60:.1f} min | {status} | {r.path}', flush=True)


def run(f) -> None:
  """The whole study (or `--sweep`) for flags `f`; with --dry_run only its plan."""
  if f.smoke:
    apply_smoke(f)
  plan = make_plan(f)
  try:
    print_plan(plan, f)
  except PlanError as e:
    sys.exit(f'paper_figures: {e}')
  if f.dry_run:
    return
  root, runs, games = plan['root'], plan['runs'], plan['games']
  start = time.time()
  os.makedirs(root, exist_ok=True)
  replay_dirs = generate_data(root, games, f)
  scores_path = reference_scores(root, replay_dirs, f)
  if any(r.kind == 'd3rlpy' for r in runs):
    prepare_d3rlpy(root, runs)
  train_start = time.time()
  failed = train_all(runs, f.parallel)
  print(f'\nTraining finished in {(time.time() - train_start) / 60:.1f} min'
        + (f'; FAILED runs: {failed} (see their train.log)' if failed else ''), flush=True)
  for name, report_runs in plan['reports']:
    report(root, name, report_runs, scores_path, f.reps)
  print('\n#### Raw returns at the final evaluation\n\n' + raw_table(runs, scores_path),
        flush=True)
  if plan['sweep']:
    table = sweep_table(runs, plan['sweep']['method'], plan['sweep']['points'])
    path = os.path.join(root, 'report', plan['reports'][0][0], 'sweep.md')
    files.atomic_write_text(path, table + '\n')
    print(f'\n#### The sweep ({path})\n\n{table}', flush=True)
  print(f'\nTotal wall time: {(time.time() - start) / 60:.1f} min; reports in '
        f'{os.path.join(root, "report")}', flush=True)


def main(argv):
  del argv
  console.quiet_third_party()
  run(flags.FLAGS)


if __name__ == '__main__':
  define_flags()
  app.run(main)
