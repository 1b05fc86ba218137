r"""Does a CQL run's Q-function tell the actions apart? Its training summaries, beside its return.

  python bench/cql_diagnostics.py --runs='runs/paper_figures/sweep/MinAtar-Breakout/cql_vit_*'

For each CQL run directory (`launch/train.py`'s layout; a glob or a comma
list) one row: the final evaluation's mean return and, averaged over the
last `--tail` of its updates (TensorBoard `Losses/*` under RUN/train):

  cql_loss      E[logsumexp_a Q(s, a) - Q(s, a_data)], CQL's regulariser
                (losses.cql_regularizer); ln|A| when all actions have the
                same Q-value, 0 when the data's action dominates
  ln|A| - cql   the data action's margin: > 0 when the Q-function ranks the
                logged actions above the rest, ~0 when it cannot tell the
                actions apart (the greedy policy then follows noise)
  q_data        E[Q(s, a_data)], the expected value of the C51 distribution

issue 11's sweep used it to read why CQL's defaults sometimes end at a
constant-looking policy (README: "The tuning sweep").
"""
import collections
import glob
import json
import math
import os
import sys
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import experiments  # pylint: disable=g-import-not-at-top

TAGS = ('Losses/cql_loss', 'Losses/q_data', 'Losses/logsumexp_q')


def define_flags(flag_values=flags.FLAGS):
  fv = dict(flag_values=flag_values)
  flags.DEFINE_list('runs', None, 'CQL run directories or globs (comma list).', **fv)
  flags.DEFINE_float('tail', 0.1, 'Fraction of the last updates the losses are averaged over.',
                     **fv)


def read_scalars(run_dir: str, tags: Sequence[str] = TAGS) -> Dict[str, List[Tuple[int, float]]]:
  """{tag: [(step, value)] sorted by step} from RUN/train/events.* (every file)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.util import event_pb2  # pylint: disable=g-import-not-at-top
  out = collections.defaultdict(list)
  for path in sorted(glob.glob(os.path.join(run_dir, 'train', 'events.out.tfevents.*'))):
    for raw in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(raw.numpy())
      for value in event.summary.value:
        if value.tag in tags:
          number = (tf.make_ndarray(value.tensor) if value.HasField('tensor')
                    else value.simple_value)
          out[value.tag].append((int(event.step), float(number)))
  return {tag: sorted(values) for tag, values in out.items()}


def tail_mean(values: Sequence[Tuple[int, float]], tail: float) -> float:
  """Mean of the values logged in the last `tail` of the steps."""
  last = values[-1][0]
  start = last - max(1, int(round(tail * last)))
  window = [v for step, v in values if step > start]
  return sum(window) / len(window)


def num_actions(run_dir: str) -> int:
  """The run's action count (train.py's rule, `fine_tune.action_count`), from run_config.json."""
  from tf_offline_q.train import fine_tune  # pylint: disable=g-import-not-at-top
  with open(os.path.join(run_dir, 'run_config.json')) as f:
    fixed = json.load(f)['fixed']
  return fine_tune.action_count(fixed.get('games') or [fixed['game']],
                                bool(fixed.get('full_action_space')))


def diagnose(run_dir: str, tail: float) -> dict:
  """One row of the table; raises ValueError naming the run if it has no CQL summaries."""
  scalars = read_scalars(run_dir)
  if 'Losses/cql_loss' not in scalars:
    raise ValueError(f'{run_dir}: no Losses/cql_loss summaries under train/ (not a CQL run, '
                     'or not started)')
  records = experiments.eval_records(run_dir)
  log_actions = math.log(num_actions(run_dir))
  cql = tail_mean(scalars['Losses/cql_loss'], tail)
  parent, name = os.path.split(os.path.normpath(run_dir))
  return dict(run=f'{os.path.basename(parent)}/{name}',
              step=scalars['Losses/cql_loss'][-1][0],
              final_return=records[-1]['mean_return'] if records else float('nan'),
              cql_loss=cql, margin=log_actions - cql, log_actions=log_actions,
              q_data=tail_mean(scalars['Losses/q_data'], tail))


def table(rows: Sequence[dict]) -> str:
  lines = ['| run | updates | final return | cql_loss | ln|A| - cql_loss | q_data |',
           '| --- | --- | --- | --- | --- | --- |']
  for r in rows:
    lines.append(f'| {r["run"]} | {r["step"]} | {r["final_return"]:.2f} | {r["cql_loss"]:.3f} | '
                 f'{r["margin"]:+.3f} (ln|A| {r["log_actions"]:.3f}) | {r["q_data"]:.2f} |')
  return '\n'.join(lines)


def run(f) -> None:
  """Prints the table for flags `f` (runs without CQL summaries: a 'skipped' line each)."""
  if not f.runs:
    raise app.UsageError('--runs: give run directories or globs')
  paths = []
  for pattern in f.runs:
    found = sorted(p for p in glob.glob(pattern) if os.path.isdir(p))
    if not found:
      raise app.UsageError(f'--runs: {pattern!r} matches no directory')
    paths += found
  if not 0 < f.tail <= 1:
    raise app.UsageError(f'--tail must be in (0, 1], got {f.tail}')
  rows = []
  for path in paths:
    try:
      rows.append(diagnose(path, f.tail))
    except (ValueError, OSError, KeyError) as e:
      print(f'skipped: {e}', flush=True)
  print(table(rows), flush=True)


def main(argv):
  del argv
  console.quiet_third_party()
  run(flags.FLAGS)


if __name__ == '__main__':
  define_flags()
  app.run(main)
