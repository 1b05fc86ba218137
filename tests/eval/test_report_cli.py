"""End-to-end tests of launch/report.py on synthetic run directories."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_offline_q.eval import evaluation
from tf_offline_q.eval import metrics
from tf_offline_q.eval import normalization

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
REPORT = os.path.join(REPO, 'launch', 'report.py')
GAMES = ('Asterix', 'Breakout', 'Pong', 'Qbert', 'Seaquest')
STEPS = (62500, 125000, 187500)


def _raw(game, normalized):
  row = normalization.reference_scores(game)
  return row.random + normalized * (row.dqn_replay - row.random)


def _score(method_offset, game_index, seed, step_index):
  """Synthetic DQN-normalised score; grows with the evaluation index."""
  return method_offset + 0.1 * game_index + 0.05 * seed + 0.3 * step_index


def _make_run(root, method, game, seed, offset, steps=STEPS):
  run_dir = os.path.join(root, f'{method}_{game}_{seed}')
  evaluation.write_run_info(run_dir, game, method, seed)
  for i, step in enumerate(steps):
    normalized = _score(offset, GAMES.index(game), seed, i)
    raw = _raw(game, normalized)
    evaluation.append_eval_record(
        run_dir, evaluation.make_eval_record(game, step, [raw, raw],
                                             lengths=[900, 900]))
  return run_dir


def _load_report_module():
  """launch/report.py as a module (its flags are only defined under main)."""
  spec = importlib.util.spec_from_file_location('tfoq_launch_report', REPORT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run_report(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', MPLBACKEND='Agg')
  return subprocess.run([sys.executable, REPORT] + list(args), cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def runs_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('runs'))
  for seed in range(3):
    for game in GAMES:
      _make_run(root, 'convnet', game, seed, offset=0.2)
      _make_run(root, 'vitts', game, seed, offset=0.6)
  # A method with runs on only two games, two seeds each.
  for seed in range(2):
    for game in ('Breakout', 'Pong'):
      _make_run(root, 'vit', game, seed, offset=0.4)
  return root


def _is_png(path):
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n' and os.path.getsize(path) > 5000


def test_report_end_to_end(runs_root, tmp_path):
  out = str(tmp_path / 'report')
  completed = _run_report(
      f'--runs={runs_root}/convnet_*', f'--runs={runs_root}/vitts_*',
      f'--runs={runs_root}/vit_*', f'--output_dir={out}', '--reps=200')
  assert completed.returncode == 0, completed.stderr[-3000:]
  for name in ('final_iqm.png', 'performance_profiles.png',
               'learning_curves.png'):
    assert _is_png(os.path.join(out, name)), name

  with open(os.path.join(out, 'summary.json')) as f:
    summary = json.load(f)
  assert sorted(summary['methods']) == ['convnet', 'vit', 'vitts']
  convnet = summary['methods']['convnet']
  # Final scores = last evaluation; hand-computed IQM over 3 runs x 5 games.
  final = np.array([[_score(0.2, g, s, 2) for g in range(5)] for s in range(3)])
  assert convnet['final_step'] == 187500
  assert convnet['num_runs_per_game'] == 3
  iqm = convnet['aggregates']['IQM']
  assert iqm['point'] == pytest.approx(metrics.iqm(final), abs=1e-6)
  assert iqm['lower'] <= iqm['point'] <= iqm['upper']
  assert convnet['curve']['steps'] == list(STEPS)
  assert convnet['max_iqm']['step'] == 187500
  vit = summary['methods']['vit']
  assert vit['games'] == ['Breakout', 'Pong']
  assert vit['missing_games'] == ['Asterix', 'Qbert', 'Seaquest']
  vit_final = np.array([[_score(0.4, GAMES.index(g), s, 2)
                         for g in ('Breakout', 'Pong')] for s in range(2)])
  assert vit['aggregates']['IQM']['point'] == pytest.approx(
      metrics.iqm(vit_final), abs=1e-6)
  assert vit['per_game']['Pong']['return_mean'] == pytest.approx(
      np.mean([_raw('Pong', _score(0.4, 2, s, 2)) for s in range(2)]))

  with open(os.path.join(out, 'report.md')) as f:
    report = f.read()
  final_table = report.split('## Final scores')[1].split('##')[0]
  rows = {line.split('|')[1].strip(): line
          for line in final_table.splitlines() if line.startswith('| ')}
  assert f'{metrics.iqm(final):.3f}' in rows['convnet']
  assert 'all 5' in rows['vitts']
  assert '2/5' in rows['vit'] and 'partial' in rows['vit']
  assert 'missing Asterix, Qbert, Seaquest' in rows['vit']
  assert 'Partial methods (vit)' in report
  assert '![Learning curves](learning_curves.png)' in report
  # vitts beats convnet everywhere by construction.
  assert (summary['methods']['vitts']['aggregates']['IQM']['point'] >
          convnet['aggregates']['IQM']['point'])


def test_report_root_dir_and_uneven_runs(tmp_path):
  report = _load_report_module()
  root = str(tmp_path / 'runs')
  for game in ('Pong', 'Breakout'):
    for seed in range(2):
      _make_run(root, 'cql', game, seed, offset=0.5)
  _make_run(root, 'cql', 'Pong', 2, offset=0.5)  # an extra seed on Pong
  # A run that stopped after two evaluations.
  _make_run(root, 'cql', 'Pong', 3, offset=0.5, steps=STEPS[:2])
  run_dirs = report.find_run_dirs(root_dir=root)
  assert len(run_dirs) == 6
  out = str(tmp_path / 'out')
  cql = report.build_report(run_dirs, out, reps=50)['methods']['cql']
  # Breakout has 2 runs, so seeds 0 and 1 are used on both games.
  assert cql['num_runs_per_game'] == 2
  assert cql['final_step'] == STEPS[-1]
  assert any('using the first 2 seeds' in n for n in cql['notes'])
  with open(os.path.join(out, 'report.md')) as f:
    assert 'using the first 2 seeds' in f.read()
  # --step picks an earlier evaluation.
  early = report.build_report(run_dirs, out, reps=50, step=STEPS[0])
  final = np.array([[_score(0.5, GAMES.index(g), s, 0)
                     for g in ('Breakout', 'Pong')] for s in range(2)])
  assert early['methods']['cql']['aggregates']['IQM']['point'] == (
      pytest.approx(metrics.iqm(final)))
  with pytest.raises(ValueError, match='--step 1 '):
    report.build_report(run_dirs, out, reps=50, step=1)


def test_report_missing_and_empty_run_dirs_are_named(tmp_path):
  report = _load_report_module()
  missing = str(tmp_path / 'no_such_run')
  with pytest.raises(ValueError, match='no_such_run'):
    report.find_run_dirs([missing])
  with pytest.raises(ValueError, match='not_a_root'):
    report.find_run_dirs(root_dir=str(tmp_path / 'not_a_root'))
  with pytest.raises(ValueError, match='holds no run directory'):
    report.find_run_dirs(root_dir=str(tmp_path))
  empty = tmp_path / 'empty_run'
  empty.mkdir()
  no_evals = str(tmp_path / 'no_evals')
  evaluation.write_run_info(no_evals, 'Pong', 'cql', 0)
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError) as error:
    report.build_report(report.find_run_dirs([f'{empty},{no_evals}']), out)
  message = str(error.value)
  assert '2 bad run directories' in message
  assert 'empty_run' in message and 'run.json' in message
  assert 'no_evals' in message and 'returns.jsonl' in message
  assert not os.path.exists(os.path.join(out, 'report.md'))
