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


# ------------------------------------------------ games outside Table 3
MINATAR_GAME = 'MinAtar-Breakout'
MINATAR_REFERENCE = normalization.ReferenceScores(random=0.5, dqn_replay=8.5)
# Raw mean returns of seeds 0..3 at the two evaluation steps.
MINATAR_RETURNS = {0: (1.0, 2.5), 1: (1.5, 4.5), 2: (2.0, 6.5), 3: (3.0, 12.5)}


def _make_minatar_runs(root):
  run_dirs = []
  for seed, returns in MINATAR_RETURNS.items():
    run_dir = os.path.join(root, f'cql_minatar_breakout_{seed}')
    evaluation.write_run_info(run_dir, MINATAR_GAME, 'cql', seed)
    for step, raw in zip(STEPS[:2], returns):
      evaluation.append_eval_record(
          run_dir, evaluation.make_eval_record(
              MINATAR_GAME, step, [raw - 1.0, raw + 1.0], lengths=[500, 500]))
    run_dirs.append(run_dir)
  return run_dirs


def test_report_minatar_with_reference_scores_file(tmp_path):
  root = str(tmp_path / 'runs')
  _make_minatar_runs(root)
  reference_file = str(tmp_path / 'reference_scores.json')
  normalization.write_reference_scores(reference_file,
                                       {MINATAR_GAME: MINATAR_REFERENCE})
  out = str(tmp_path / 'report')
  completed = _run_report(f'--root_dir={root}', f'--output_dir={out}',
                          '--reps=100', f'--reference_scores={reference_file}')
  assert completed.returncode == 0, completed.stderr[-3000:]

  with open(os.path.join(out, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['games'] == [MINATAR_GAME]
  assert summary['reference_scores'] == {
      'file': reference_file,
      'games': {MINATAR_GAME: {'random': 0.5, 'dqn_replay': 8.5,
                               'one_means': 'dataset average'}}}
  cql = summary['methods']['cql']
  assert cql['final_step'] == STEPS[1] and cql['num_runs_per_game'] == 4
  # Final raw returns 2.5, 4.5, 6.5, 12.5 -> (r - 0.5) / (8.5 - 0.5) = 0.25,
  # 0.5, 0.75, 1.5; the IQM of 4 scores is the mean of the middle two.
  iqm = cql['aggregates']['IQM']
  assert iqm['point'] == pytest.approx((0.5 + 0.75) / 2)
  assert iqm['lower'] <= iqm['point'] <= iqm['upper']
  # First evaluation: 1.0, 1.5, 2.0, 3.0 -> 0.0625, 0.125, 0.1875, 0.3125.
  assert cql['curve']['iqm'] == pytest.approx([(0.125 + 0.1875) / 2, 0.625])
  assert cql['per_game'][MINATAR_GAME] == {
      'normalized_mean': pytest.approx((0.25 + 0.5 + 0.75 + 1.5) / 4),
      'return_mean': pytest.approx((2.5 + 4.5 + 6.5 + 12.5) / 4)}

  with open(os.path.join(out, 'report.md')) as f:
    report = f.read()
  header = report.split('## Final scores')[0]
  assert f'`{reference_file}`' in header
  assert f'| {MINATAR_GAME} | 0.5 | 8.5 | dataset average |' in header
  assert '| 1.0 is |' in header
  final_table = report.split('## Final scores')[1].split('##')[0]
  assert '0.625 [' in final_table


def test_report_says_what_one_is_from_the_reference_file(tmp_path, monkeypatch):
  """D4RL datasets normalise to the expert, Fetch to a success rate of 1: the
  report's table and the learning-curve line say so, not "dataset average"."""
  report = _load_report_module()
  run_dirs = _make_minatar_runs(str(tmp_path / 'runs'))
  reference_file = str(tmp_path / 'reference_scores.json')
  normalization.write_reference_scores(reference_file, {MINATAR_GAME: MINATAR_REFERENCE},
                                       {MINATAR_GAME: 'expert'})
  seen = {}
  real_curves = report.plots.plot_learning_curves

  def spy(*args, **kwargs):
    seen['reference_label'] = kwargs.get('reference_label')
    return real_curves(*args, **kwargs)

  monkeypatch.setattr(report.plots, 'plot_learning_curves', spy)
  out = str(tmp_path / 'out')
  summary = report.build_report(run_dirs, out, reps=50, reference_scores=reference_file)
  assert seen['reference_label'] == 'expert'
  assert summary['reference_scores']['games'][MINATAR_GAME]['one_means'] == 'expert'
  with open(os.path.join(out, 'report.md')) as f:
    assert f'| {MINATAR_GAME} | 0.5 | 8.5 | expert |' in f.read()


def test_report_minatar_without_reference_scores_fails_clearly(tmp_path):
  report = _load_report_module()
  run_dirs = _make_minatar_runs(str(tmp_path / 'runs'))
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError) as error:
    report.build_report(run_dirs, out, reps=50)
  message = str(error.value)
  assert '4 bad run directories' in message
  assert MINATAR_GAME in message and '--reference_scores' in message
  assert not os.path.exists(os.path.join(out, 'report.md'))
  completed = _run_report(f'--root_dir={tmp_path / "runs"}',
                          f'--output_dir={out}', '--reps=50')
  assert completed.returncode != 0
  assert '--reference_scores' in completed.stderr
  assert MINATAR_GAME in completed.stderr


def test_report_reference_scores_mapping_and_bad_file(tmp_path):
  report = _load_report_module()
  root = str(tmp_path / 'runs')
  run_dirs = _make_minatar_runs(root)
  run_dirs.append(_make_run(root, 'cql', 'Pong', 0, offset=0.5))
  out = str(tmp_path / 'out')
  # A mapping instead of a file; only games with runs are listed.
  summary = report.build_report(
      run_dirs, out, reps=50, reference_scores={
          'minatar-breakout': MINATAR_REFERENCE,
          'MinAtar-Freeway': normalization.ReferenceScores(0.0, 10.0)})
  # Games are spelled as in the reference scores (like Table 3's spelling).
  assert summary['games'] == ['Pong', 'minatar-breakout']
  assert summary['reference_scores'] == {
      'file': None, 'games': {'minatar-breakout': dict(MINATAR_REFERENCE._asdict(),
                                                       one_means='dataset average')}}
  cql = summary['methods']['cql']
  # One run per game (Pong has one), so seed 0 only: 2.5 -> 0.25.
  assert cql['num_runs_per_game'] == 1
  assert cql['per_game']['minatar-breakout']['normalized_mean'] == (
      pytest.approx(0.25))
  # The final step is the last one all runs share: STEPS[1].
  assert cql['final_step'] == STEPS[1]
  assert cql['per_game']['Pong']['normalized_mean'] == pytest.approx(
      _score(0.5, GAMES.index('Pong'), 0, 1))
  with open(os.path.join(out, 'report.md')) as f:
    assert 'the mapping given to build_report' in f.read()
  # Bad files are named, with the flag.
  bad = tmp_path / 'bad.json'
  bad.write_text('{"MinAtar-Breakout": {"random": 1.0}}')
  for path, expected in ((str(bad), "missing field 'dqn_replay'"),
                         (str(tmp_path / 'none.json'), 'does not exist')):
    with pytest.raises(ValueError) as error:
      report.build_report(run_dirs, out, reps=50, reference_scores=path)
    message = str(error.value)
    assert '--reference_scores' in message and path in message
    assert expected in message
  # A reference file cannot override Table 3.
  with pytest.raises(ValueError, match='is in Table 3'):
    report.build_report(run_dirs, out, reps=50,
                        reference_scores={'Pong': (0.0, 1.0)})
