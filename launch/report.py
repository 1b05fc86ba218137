r"""Aggregate report over training runs: DQN-normalised IQM, profiles, curves.

Reads run directories (each `RUN_DIR/run.json` + `RUN_DIR/eval/returns.jsonl`,
see `tf_offline_q.eval.evaluation`; a multi-game run, whose run.json lists
"games", counts as one run of each of its games), groups them by method, and
writes to
`--output_dir`:

  report.md                 tables: final IQM / median / mean with 95% CIs,
                            max IQM over evaluations, per-game scores, notes
  summary.json              the same numbers, machine-readable
  final_iqm.png             final IQM per method with 95% CIs
  performance_profiles.png  score distributions at the final evaluation
  learning_curves.png       IQM per evaluation step with 95% CI bands

Scores are DQN-normalised (random 0, DQN-Replay 1.0, Table 3) mean returns of
each evaluation; aggregates pool runs x games; CIs are rliable's stratified
bootstrap (runs resampled within each game).

Games outside Table 3 (e.g. MinAtar's 'MinAtar-Breakout') need
`--reference_scores=FILE`, a JSON file {"Game": {"random": float,
"dqn_replay": float}} (see `tf_offline_q.eval.normalization`; for such games
`dqn_replay` is the average episode return of the offline dataset used). The
report names the file and lists the scores it took from it.

Per method: its games are the games it has runs for (a method with runs on
only some games is aggregated over those, and the table says so); it uses
the same number of runs on every game (the smallest count; extra seeds are
left out, noted); its curve covers the evaluation steps that all its used runs
reached, and its final score is the last such step (or `--step`).

Flags are defined by `define_flags()` only when this file runs as a script, so
tests and notebooks can import it and call `build_report` directly.

Usage:
  python launch/report.py --runs='runs/*/vit_ts_*' --runs='runs/*/convnet_*' \
      --output_dir=reports/figure3
  python launch/report.py --root_dir=runs --output_dir=reports/all
  python launch/report.py --root_dir=runs/minatar --output_dir=reports/minatar \
      --reference_scores=runs/minatar/reference_scores.json
"""
import collections
import glob
import os
import sys
from typing import (Any, Dict, List, Mapping, NamedTuple, Optional,
                    Sequence, Union)

from absl import app
from absl import flags
import numpy as np

from tf_offline_q import console
from tf_offline_q import files
from tf_offline_q import progress as progress_lib
from tf_offline_q.eval import evaluation
from tf_offline_q.eval import metrics
from tf_offline_q.eval import normalization
from tf_offline_q.eval import plots

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (when run as a script, not on import)."""
  flags.DEFINE_multi_string(
      'runs', [], 'Run directories or globs of them (repeatable; commas also '
      'separate).')
  flags.DEFINE_string(
      'root_dir', None, 'Directory searched recursively for run directories '
      '(those holding run.json).')
  flags.DEFINE_string('output_dir', None, 'Where report.md and the PNGs go.')
  flags.DEFINE_integer('reps', metrics.DEFAULT_REPS,
                       'Bootstrap replications for the confidence intervals.')
  flags.DEFINE_integer('seed', 0, 'Seed of the bootstrap.')
  flags.DEFINE_integer(
      'step', None, 'Training step of the "final" scores (default: per method, '
      'the last evaluation step all its runs reached).')
  flags.DEFINE_string(
      'reference_scores', None, 'JSON file of reference scores for games '
      'outside the paper\'s Table 3 (e.g. MinAtar): {"Game": {"random": '
      'float, "dqn_replay": float}}, dqn_replay being the average episode '
      'return of the offline dataset used.')


AGGREGATES = ('IQM', 'Median', 'Mean')


class Run(NamedTuple):
  run_dir: str
  game: str
  method: str
  seed: int
  mean_returns: Dict[int, float]  # step -> mean raw return
  normalized: Dict[int, float]    # step -> DQN-normalised mean return


def find_run_dirs(run_globs: Sequence[str] = (),
                  root_dir: Optional[str] = None) -> List[str]:
  """Run directories from globs and/or a root directory; errors name inputs."""
  patterns = [p for g in run_globs for p in g.split(',') if p.strip()]
  if not patterns and not root_dir:
    raise ValueError('Give run directories with --runs or --root_dir')
  run_dirs = []
  for pattern in patterns:
    pattern = pattern.strip()
    matches = sorted(glob.glob(pattern))
    if not matches:
      raise ValueError(f'--runs {pattern!r} matches no run directory')
    for match in matches:
      if not os.path.isdir(match):
        raise ValueError(f'Run directory {match!r} is not a directory')
      run_dirs.append(match)
  if root_dir:
    if not os.path.isdir(root_dir):
      raise ValueError(f'--root_dir {root_dir!r} does not exist')
    found = sorted(
        dirpath for dirpath, _, filenames in os.walk(root_dir)
        if evaluation.RUN_INFO_FILE in filenames)
    if not found:
      raise ValueError(
          f'--root_dir {root_dir!r} holds no run directory (no '
          f'{evaluation.RUN_INFO_FILE} below it)')
    run_dirs.extend(found)
  unique = []
  for d in run_dirs:
    if os.path.abspath(d) not in {os.path.abspath(u) for u in unique}:
      unique.append(d)
  return unique


def load_reference(
    reference_scores: Union[None, str, Mapping[str, Any]]
) -> Optional[Dict[str, Any]]:
  """{'file': path or None, 'scores': {game: ReferenceScores},
  'one_means': {game: what 1.0 is}} or None.

  `reference_scores` is a reference-scores JSON file, or a mapping
  {game: ReferenceScores} (then 'file' is None and 1.0 is the dataset
  average). Errors are ValueErrors naming --reference_scores and the file.
  """
  if reference_scores is None:
    return None
  if isinstance(reference_scores, Mapping):
    scores = normalization.validate_reference_scores(
        reference_scores, 'reference_scores')
    return {'file': None, 'scores': scores,
            'one_means': {g: normalization.DATASET_AVERAGE for g in scores}}
  path = os.fspath(reference_scores)
  try:
    scores = normalization.load_reference_scores(path)
    one_means = normalization.reference_labels(path)
  except (OSError, ValueError) as e:
    raise ValueError(f'--reference_scores: {e}') from e
  return {'file': path, 'scores': scores, 'one_means': one_means}


def load_runs(run_dir: str,
              extra: Optional[Mapping[str, normalization.ReferenceScores]] = None
             ) -> List[Run]:
  """The runs of one run directory: one Run, or one per game of a multi-game
  run (run.json lists "games"; Scaled Q-learning), all with the directory's
  method and seed. Errors name the directory."""
  try:
    info = evaluation.read_run_info(run_dir)
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f'Run directory {run_dir!r}: {e}') from e
  games = info.get('games')
  if not games:
    return [load_run(run_dir, extra)]
  return [load_run(run_dir, extra, game=game) for game in games]


def load_run(run_dir: str,
             extra: Optional[Mapping[str, normalization.ReferenceScores]] = None,
             game: Optional[str] = None) -> Run:
  """One run's metadata and evaluations; errors name the directory.

  `extra`: reference scores of games outside Table 3 (`--reference_scores`).
  `game`: one game of a multi-game run (its records only; see `load_runs`).
  """
  if not os.path.isdir(run_dir):
    raise ValueError(f'Run directory {run_dir!r} does not exist')
  try:
    info = evaluation.read_run_info(run_dir)
    records = evaluation.read_eval_records(run_dir)
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f'Run directory {run_dir!r}: {e}') from e
  if game is not None:
    records = [r for r in records if r['game'].lower() == game.lower()]
  if not records:
    raise ValueError(
        f'Run directory {run_dir!r}: {evaluation.returns_path(run_dir)} holds '
        f'no evaluation{f" of {game}" if game else ""}')
  try:
    game = normalization.normalization_game_name(game or str(info['game']), extra)
  except ValueError as e:
    raise ValueError(
        f'Run directory {run_dir!r}: {e} Give the reference scores of games '
        'outside Table 3 with --reference_scores=FILE (JSON {"Game": '
        '{"random": float, "dqn_replay": float}}).') from e
  mean_returns, normalized = {}, {}
  for record in records:
    if record['game'].lower() != game.lower():
      raise ValueError(
          f'Run directory {run_dir!r}: run.json says game {info["game"]!r} '
          f'but an evaluation at step {record["step"]} is of {record["game"]!r}')
    step = int(record['step'])
    mean_returns[step] = float(record['mean_return'])
    normalized[step] = normalization.dqn_normalized_score(
        game, record['mean_return'], extra)
  return Run(run_dir=run_dir, game=game, method=str(info['method']),
             seed=int(info['seed']), mean_returns=mean_returns,
             normalized=normalized)


def _fmt(estimate) -> str:
  return f'{estimate[0]:.3f} [{estimate[1]:.3f}, {estimate[2]:.3f}]'


def summarize_method(method: str, runs: Sequence[Run],
                     step: Optional[int]) -> Dict[str, Any]:
  """Rectangular score arrays of one method, and notes on what was left out."""
  notes = []
  by_game = collections.defaultdict(list)
  for run in runs:
    by_game[run.game].append(run)
  games = sorted(by_game)
  for game in games:
    by_game[game].sort(key=lambda r: (r.seed, r.run_dir))
    seeds = [r.seed for r in by_game[game]]
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
      dirs = [r.run_dir for r in by_game[game] if r.seed in duplicates]
      raise ValueError(
          f'Method {method!r}, game {game}: seed(s) {duplicates} appear in '
          f'several run directories: {dirs}')
  num_runs = min(len(by_game[g]) for g in games)
  for game in games:
    if len(by_game[game]) > num_runs:
      left_out = by_game[game][num_runs:]
      notes.append(
          f'{game}: {len(by_game[game])} runs, using the first {num_runs} '
          f'seeds (left out: {", ".join(r.run_dir for r in left_out)})')
  used = {g: by_game[g][:num_runs] for g in games}
  all_used = [r for g in games for r in used[g]]
  common = set.intersection(*(set(r.normalized) for r in all_used))
  every = set.union(*(set(r.normalized) for r in all_used))
  if not common:
    raise ValueError(
        f'Method {method!r}: its runs share no evaluation step '
        f'({", ".join(r.run_dir for r in all_used)})')
  steps = sorted(common)
  if len(every) > len(common):
    last = {r.run_dir: max(r.normalized) for r in all_used}
    behind = [d for d, s in last.items() if s < max(every)]
    notes.append(
        f'curve limited to the {len(steps)} evaluation steps all '
        f'{len(all_used)} runs share (up to {steps[-1]}); runs stopping '
        f'earlier or evaluated at other steps: {", ".join(sorted(behind)) or "-"}')
  if step is not None:
    if step not in common:
      raise ValueError(
          f'Method {method!r}: --step {step} is not an evaluation step of all '
          f'its runs (shared steps: {steps})')
    final_step = step
  else:
    final_step = steps[-1]
  curves = np.array([[[used[g][i].normalized[s] for s in steps]
                      for g in games] for i in range(num_runs)])
  raw = np.array([[used[g][i].mean_returns[final_step] for g in games]
                  for i in range(num_runs)])
  final = curves[:, :, steps.index(final_step)]
  return {
      'games': games,
      'num_runs': num_runs,
      'steps': steps,
      'final_step': final_step,
      'curves': curves,       # [num_runs, num_games, num_steps]
      'final': final,         # [num_runs, num_games]
      'final_raw': raw,       # [num_runs, num_games]
      'run_dirs': [r.run_dir for r in all_used],
      'notes': notes,
  }


def build_report(run_dirs: Sequence[str], output_dir: str,
                 reps: int = metrics.DEFAULT_REPS, seed: int = 0,
                 step: Optional[int] = None,
                 reference_scores: Union[None, str, Mapping[str, Any]] = None
                ) -> Dict[str, Any]:
  """Writes report.md, summary.json and the PNGs; returns the summary.

  `reference_scores`: path of a reference-scores JSON file, or a mapping
  {game: ReferenceScores}, for games outside Table 3 (see `load_reference`).
  """
  if not run_dirs:
    raise ValueError('No run directories given')
  reference = load_reference(reference_scores)
  extra = reference['scores'] if reference else None
  runs, errors = [], []
  for run_dir in run_dirs:
    try:
      runs.extend(load_runs(run_dir, extra))
    except ValueError as e:
      errors.append(str(e))
  if errors:
    raise ValueError(f'{len(errors)} bad run director'
                     f'{"y" if len(errors) == 1 else "ies"}:\n  ' +
                     '\n  '.join(errors))
  by_method = collections.defaultdict(list)
  for run in runs:
    by_method[run.method].append(run)
  methods = sorted(by_method)
  data = {m: summarize_method(m, by_method[m], step) for m in methods}
  all_games = sorted({g for m in methods for g in data[m]['games']})

  finals = {m: data[m]['final'] for m in methods}
  # Bootstrap stages: final aggregates (all methods), one learning curve per
  # method, performance profiles (all methods).
  bootstrap = progress_lib.Progress(f'Bootstrap CIs ({reps} resamples)',
                                    total=len(methods) + 2, unit='estimates', interval=5)
  estimates = metrics.interval_estimates(finals, AGGREGATES, reps=reps,
                                         seed=seed)
  bootstrap.update(1)
  curves = {}
  for m in methods:
    points, cis = metrics.iqm_curve(data[m]['curves'], reps=reps, seed=seed)
    curves[m] = (np.asarray(data[m]['steps']), points, cis)
    bootstrap.update(1)
  taus, profiles, profile_cis = metrics.performance_profiles(
      finals, reps=reps, seed=seed)
  bootstrap.update(1)
  bootstrap.done()

  # Partial methods are labelled with their game coverage in the figures.
  labels = {
      m: (m if len(data[m]['games']) == len(all_games) else
          f'{m} ({len(data[m]["games"])}/{len(all_games)} games)')
      for m in methods
  }
  # Axis labels say what 1.0 is: DQN-Replay (Table 3) or, for games scored
  # with a reference-score file, its "one_means" (the dataset average unless
  # the file says otherwise: a D4RL expert, a success rate of 1).
  one_means = reference['one_means'] if reference else {}
  labels_of_1 = sorted({'DQN-Replay' if g in normalization.TABLE_3 else
                        one_means.get(g, normalization.DATASET_AVERAGE) for g in all_games})
  score_label = (plots.SCORE_LABEL if labels_of_1 == ['DQN-Replay'] else 'normalised score')
  reference_label = ' / '.join(labels_of_1)
  os.makedirs(output_dir, exist_ok=True)
  figures = {
      'final_iqm': plots.plot_aggregate_estimates(
          {labels[m]: estimates[m]['IQM'] for m in methods},
          os.path.join(output_dir, 'final_iqm.png'),
          title='Final IQM (95% stratified bootstrap CI)', xlabel=f'IQM {score_label}'),
      'performance_profiles': plots.plot_performance_profiles(
          taus, {labels[m]: profiles[m] for m in methods},
          {labels[m]: profile_cis[m] for m in methods},
          os.path.join(output_dir, 'performance_profiles.png'),
          title='Performance profiles at the final evaluation',
          xlabel=f'{score_label} ($\\tau$)'),
      'learning_curves': plots.plot_learning_curves(
          {labels[m]: curves[m] for m in methods},
          os.path.join(output_dir, 'learning_curves.png'),
          title='IQM over evaluations (95% CI)', ylabel=f'IQM {score_label}',
          reference_label=reference_label),
  }

  summary = {'games': all_games, 'reps': reps, 'seed': seed, 'methods': {}}
  # Where the scores of games outside Table 3 came from (None: not given).
  summary['reference_scores'] = None if reference is None else {
      'file': reference['file'],
      'games': {g: dict(reference['scores'][g]._asdict(), one_means=one_means[g])
                for g in all_games if g in reference['scores']},
  }
  for m in methods:
    d = data[m]
    points = curves[m][1]
    best = int(np.argmax(points))
    summary['methods'][m] = {
        'games': d['games'],
        'missing_games': [g for g in all_games if g not in d['games']],
        'num_runs_per_game': d['num_runs'],
        'final_step': d['final_step'],
        'aggregates': {a: estimates[m][a]._asdict() for a in AGGREGATES},
        'max_iqm': {'iqm': float(points[best]),
                    'step': int(d['steps'][best])},
        'curve': {'steps': [int(s) for s in d['steps']],
                  'iqm': [float(p) for p in points],
                  'lower': [float(c) for c in curves[m][2][0]],
                  'upper': [float(c) for c in curves[m][2][1]]},
        'per_game': {
            g: {'normalized_mean': float(np.mean(d['final'][:, j])),
                'return_mean': float(np.mean(d['final_raw'][:, j]))}
            for j, g in enumerate(d['games'])},
        'run_dirs': d['run_dirs'],
        'notes': d['notes'],
    }
  summary['figures'] = {k: os.path.basename(v) for k, v in figures.items()}
  evaluation.atomic_write_json(os.path.join(output_dir, 'summary.json'),
                               summary)
  markdown = render_markdown(summary)
  files.atomic_write_text(os.path.join(output_dir, 'report.md'), markdown)
  return summary


def render_markdown(summary: Dict[str, Any]) -> str:
  """report.md from `build_report`'s summary."""
  games = summary['games']
  if any(g in normalization.TABLE_3 for g in games):
    scale = ('Scores are DQN-normalised mean evaluation returns: random = 0, average '
             'DQN-Replay = 1.0 (paper Table 3; other games: the reference scores below).')
  else:
    scale = ('Scores are normalised mean evaluation returns: 0 and 1.0 are the reference '
             'scores below (random play and the "1.0 is" column).')
  lines = [
      '# Offline evaluation report', '',
      scale + ' Aggregates pool runs x games; '
      f'brackets are 95% stratified bootstrap CIs (rliable, {summary["reps"]} '
      'replications).', '',
  ]
  reference = summary.get('reference_scores')
  if reference is not None:
    source = (f'`{reference["file"]}`' if reference['file'] else
              'the mapping given to build_report')
    if reference['games']:
      lines += [
          f'Games outside Table 3 are normalised with the reference scores '
          f'from {source}: random = mean return of the random policy; '
          'normalised 1.0 = the return in the "1.0" column, which is what the '
          '"1.0 is" column says (dataset average = average episode return of '
          'the offline dataset).', '',
          '| Game | Random | 1.0 | 1.0 is |', '|---|---|---|---|']
      lines += [f'| {g} | {r["random"]:.4g} | {r["dqn_replay"]:.4g} | '
                f'{r.get("one_means", normalization.DATASET_AVERAGE)} |'
                for g, r in reference['games'].items()]
      lines.append('')
    else:
      lines += [f'Reference scores from {source} were given, but no game '
                'of these runs uses them (all are in Table 3).', '']
  lines += [
      '## Final scores', '',
      '| Method | Games | Runs/game | Step | IQM [95% CI] | Median [95% CI] '
      '| Mean [95% CI] | Max IQM (step) |',
      '|---|---|---|---|---|---|---|---|',
  ]
  partial = []
  for m, s in summary['methods'].items():
    agg = s['aggregates']
    if s['missing_games']:
      games_cell = (f'{len(s["games"])}/{len(games)}: '
                    f'{", ".join(s["games"])} (partial; missing '
                    f'{", ".join(s["missing_games"])})')
      partial.append(m)
    else:
      games_cell = f'all {len(games)}'
    cells = [m, games_cell, str(s['num_runs_per_game']), str(s['final_step'])]
    cells += [_fmt((agg[a]['point'], agg[a]['lower'], agg[a]['upper']))
              for a in AGGREGATES]
    cells.append(f'{s["max_iqm"]["iqm"]:.3f} ({s["max_iqm"]["step"]})')
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines.append('')
  if partial:
    lines.append(
        f'Partial methods ({", ".join(partial)}) are aggregated over their own '
        'games only; compare them with the others on those games (per-game '
        'table below), not through the aggregate.')
    lines.append('')
  lines += ['## Per-game final scores', '',
            'Normalised score (raw mean return), averaged over runs; '
            '"-" = no runs.', '',
            '| Method | ' + ' | '.join(games) + ' |',
            '|---|' + '---|' * len(games)]
  for m, s in summary['methods'].items():
    cells = [m]
    for g in games:
      if g in s['per_game']:
        pg = s['per_game'][g]
        cells.append(f'{pg["normalized_mean"]:.3f} ({pg["return_mean"]:.1f})')
      else:
        cells.append('-')
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', '## Figures', '',
            '![Final IQM](final_iqm.png)', '',
            '![Performance profiles](performance_profiles.png)', '',
            '![Learning curves](learning_curves.png)', '']
  notes = [(m, n) for m, s in summary['methods'].items() for n in s['notes']]
  if notes:
    lines += ['## Notes', '']
    lines += [f'- {m}: {n}' for m, n in notes]
    lines.append('')
  lines += ['## Runs', '']
  for m, s in summary['methods'].items():
    lines.append(f'- {m}: ' + ', '.join(f'`{d}`' for d in s['run_dirs']))
  lines.append('')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS.output_dir:
    raise app.UsageError('--output_dir is required')
  console.quiet_third_party()   # rliable logs an INFO line per estimate.
  try:
    run_dirs = find_run_dirs(FLAGS.runs, FLAGS.root_dir)
    print(f'Reporting on {len(run_dirs)} run directories', flush=True)
    summary = build_report(run_dirs, FLAGS.output_dir, reps=FLAGS.reps,
                           seed=FLAGS.seed, step=FLAGS.step,
                           reference_scores=FLAGS.reference_scores)
  except ValueError as e:
    sys.exit(f'report.py: error: {e}')
  for m, s in summary['methods'].items():
    iqm = s['aggregates']['IQM']
    print(f'{m}: IQM {iqm["point"]:.3f} [{iqm["lower"]:.3f}, '
          f'{iqm["upper"]:.3f}] over {len(s["games"])} games x '
          f'{s["num_runs_per_game"]} runs at step {s["final_step"]}')
  print(f'Wrote {os.path.join(FLAGS.output_dir, "report.md")}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
