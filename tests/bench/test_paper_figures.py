"""bench/paper_figures.py without training: its plans, --dry_run, resuming, the sweep.

Every planned `launch/train.py` command is parsed with train.py's own gin
parser, so the assertions are on the values the runs would get, not on text.
"""
import json
import os

from absl import app
from absl import flags
import gin
import pytest

from bench import learning
from bench import paper_figures as pf
from tests import launch_scripts
from tf_offline_q import experiments
from tf_offline_q.eval import normalization

TRAIN = launch_scripts.load('train')
GAMES = ['MinAtar-Breakout', 'MinAtar-SpaceInvaders']
# gin parameter -> the value every run of the default plan gets.
COMMON = {
    'train_eval.fraction': 0.1, 'train_eval.subset_mode': 'uniform', 'train_eval.data_seed': 0,
    'train_eval.num_train_steps': 2000, 'train_eval.batch_size': 32,
    'train_eval.eval_interval': 1000, 'train_eval.eval_steps': 1000,
    'train_eval.eval_max_episodes': 30, 'train_eval.max_episode_frames': 2000,
    'train_eval.eval_epsilon': 0.001, 'train_eval.sticky_action_prob': 0.25,
    'train_eval.full_action_space': False, 'train_eval.variant': 'micro',
    'train_eval.n_step': 3, 'train_eval.checkpoint_interval': 1000,
    'CqlC51Agent.cql_alpha': 0.05, 'CqlC51Agent.learning_rate': 3e-4,
    'CqlC51Agent.target_update_period': 200, 'bc.BehavioralCloningAgent.learning_rate': 3e-4,
}
# method -> (agent_type, backbone, aggregation) of its gin file.
NETWORKS = {
    'cql_vit': ('cql', 'vit', 'none'), 'cql_vit_ts': ('cql', 'vit_ts', 'none'),
    'bc_vit': ('bc', 'vit', 'none'), 'bc_vit_ts': ('bc', 'vit_ts', 'none'),
    'cql_convnet': ('cql', 'convnet', 'none'), 'cql_vit_mean': ('cql', 'vit', 'mean'),
    'cql_vit_learned': ('cql', 'vit', 'learned'), 'cql_vit_ts_mean': ('cql', 'vit_ts', 'mean'),
    'cql_vit_ts_learned': ('cql', 'vit_ts', 'learned'), 'bc_convnet': ('bc', 'convnet', 'none'),
}
NETWORK_KEYS = ('train_eval.agent_type', 'train_eval.backbone', 'train_eval.aggregation')
RUN_KEYS = ('train_eval.method', 'train_eval.seed', 'train_eval.game', 'train_eval.data_source')


def _flags(*args):
  fv = flags.FlagValues()
  pf.define_flags(fv)
  fv(['paper_figures', *args])
  return fv


def _gin_values(command, keys=tuple(COMMON) + NETWORK_KEYS + RUN_KEYS):
  """The values train.py would configure from `command` (gin files + bindings)."""
  assert command[0] == 'launch/train.py'
  files = [a.split('=', 1)[1] for a in command if a.startswith('--gin_file=')]
  bindings = [a.split('=', 1)[1] for a in command if a.startswith('--gin_bindings=')]
  gin.clear_config()
  try:
    TRAIN.parse_gin(files, bindings)
    values = {}
    for key in keys:
      try:
        values[key] = gin.query_parameter(key)
      except ValueError:                     # not bound: train_eval's own default
        values[key] = None
    return values
  finally:
    gin.clear_config()


def _arg(command, name):
  values = [a.split('=', 1)[1] for a in command if a.startswith(f'--{name}=')]
  assert len(values) == 1, (name, command)
  return values[0]


def _write_run(run, steps, recorded=None):
  """A fake run directory: eval records at `steps`, the recorded settings."""
  os.makedirs(os.path.join(run.path, 'eval'), exist_ok=True)
  with open(os.path.join(run.path, 'eval', 'returns.jsonl'), 'w') as f:
    for step, mean_return in steps:
      f.write(json.dumps({'game': run.game, 'step': step, 'mean_return': mean_return,
                          'returns': [mean_return], 'normalized': None}) + '\n')
  s = run.settings
  if run.kind == 'd3rlpy':
    name, record = 'reference_config.json', {'settings': dict(dict(
        game=run.game, fraction=s.fraction, data_seed=s.data_seed, seed=run.seed,
        batch_size=s.batch_size, learning_rate=s.learning_rate, cql_alpha=s.cql_alpha,
        target_update_period=s.target_update_period), **(recorded or {}))}
  elif run.method.startswith('bc_'):       # train.py records only the agent's own settings
    name, record = 'run_config.json', {'fixed': dict({
        'game': run.game, 'fraction': s.fraction, 'data_seed': s.data_seed, 'seed': run.seed,
        'batch_size': s.batch_size, 'BehavioralCloningAgent.learning_rate': s.learning_rate},
        **(recorded or {}))}
  else:
    name, record = 'run_config.json', {'fixed': dict({
        'game': run.game, 'fraction': s.fraction, 'data_seed': s.data_seed, 'seed': run.seed,
        'batch_size': s.batch_size, 'CqlC51Agent.learning_rate': s.learning_rate,
        'CqlC51Agent.cql_alpha': s.cql_alpha,
        'CqlC51Agent.target_update_period': s.target_update_period}, **(recorded or {}))}
  with open(os.path.join(run.path, name), 'w') as f:
    json.dump(record, f)


def test_default_plan_is_figures_2_and_3_with_d3rlpy(tmp_path):
  root = str(tmp_path)
  plan = pf.make_plan(_flags(f'--root_dir={root}'))
  runs = plan['runs']
  assert plan['games'] == GAMES and plan['sweep'] is None
  methods = ['cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts', 'd3rlpy_cql', 'd3rlpy_bc',
             'cql_convnet']
  assert list(dict.fromkeys(r.method for r in runs)) == methods
  assert len(runs) == 7 * 2 * 3 and len({r.path for r in runs}) == len(runs)
  assert sorted({(r.game, r.method, r.seed) for r in runs}) == sorted(
      (g, m, s) for g in GAMES for m in methods for s in range(3))
  assert sum(r.kind == 'd3rlpy' for r in runs) == 12
  assert [name for name, _ in plan['reports']] == ['figure2', 'figure3']
  figure2 = {r.method for r in plan['reports'][0][1]}
  assert figure2 == {'cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts', 'd3rlpy_cql', 'd3rlpy_bc'}
  assert {r.method for r in plan['reports'][1][1]} == {'cql_vit', 'cql_vit_ts', 'cql_convnet'}
  seen = set()
  for run in runs:
    assert run.path == os.path.join(root, 'runs', run.game, f'{run.method}_s{run.seed}')
    if run.kind == 'd3rlpy':
      c = run.command
      assert c[0] == 'bench/d3rlpy_reference/run_reference.py'
      assert _arg(c, 'algo') == pf.D3RLPY_METHODS[run.method]
      assert (_arg(c, 'fraction'), _arg(c, 'seed'), _arg(c, 'num_train_steps')) == (
          '0.1', str(run.seed), '2000')
      assert _arg(c, 'data_source') == f'dopamine:{pf.replay_dir(root, run.game)}'
      assert _arg(c, 'transitions') == os.path.join(
          root, 'transitions', f'{run.game}_f0.1_uniform_s0_n3.npz')
      assert (_arg(c, 'cql_alpha'), _arg(c, 'target_update_period'),
              _arg(c, 'learning_rate'), _arg(c, 'batch_size')) == ('0.05', '200', '0.0003', '32')
      continue
    if (run.method, run.game) in seen and run.seed:
      continue          # One seed per method and game is parsed (the rest differ by seed).
    seen.add((run.method, run.game))
    values = _gin_values(run.command)
    assert {k: values[k] for k in COMMON} == COMMON
    assert tuple(values[k] for k in NETWORK_KEYS) == NETWORKS[run.method]
    assert [values[k] for k in RUN_KEYS] == [
        run.method, run.seed, run.game, f'dopamine:{pf.replay_dir(root, run.game)}']


def test_figures_2_3_4_add_the_aggregations_once(tmp_path):
  plan = pf.make_plan(_flags(f'--root_dir={tmp_path}', '--figures=2,3,4', '--nod3rlpy',
                             '--extra_methods=bc_convnet', '--games=MinAtar-Breakout',
                             '--seeds=2'))
  runs = plan['runs']
  methods = list(dict.fromkeys(r.method for r in runs))
  assert methods == ['cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts', 'bc_convnet',
                     'cql_convnet', 'cql_vit_mean', 'cql_vit_learned', 'cql_vit_ts_mean',
                     'cql_vit_ts_learned']
  assert len(runs) == len(methods) * 2 and len({r.path for r in runs}) == len(runs)
  assert all(r.kind == 'ours' for r in runs)
  reports = dict(plan['reports'])
  assert set(reports) == {'figure2', 'figure3', 'figure4'}
  assert {r.method for r in reports['figure4']} == set(pf.FIGURES['4'])
  assert len(reports['figure4']) == 6 * 2
  assert 'bc_convnet' in {r.method for r in reports['figure2']}
  for method in ('cql_vit_ts_learned', 'bc_convnet'):
    run = next(r for r in runs if r.method == method)
    values = _gin_values(run.command)
    assert tuple(values[k] for k in NETWORK_KEYS) == NETWORKS[method]
    assert values['train_eval.method'] == method


def test_dry_run_prints_the_plan_and_its_cost_and_writes_nothing(tmp_path, capsys):
  root = tmp_path / 'study'
  pf.run(_flags(f'--root_dir={root}', '--dry_run'))
  out = capsys.readouterr().out
  # The docstring's arithmetic: 30 x 179 s + 12 x 441 s over 2 processes + data + reports.
  assert '42 runs (30 of ours x 179s, 12 d3rlpy x 441s) over 2 processes' in out
  assert 'about 94 min for the whole plan' in out
  assert '0 runs finished already, 42 to run, data missing for 2 of 2 games' in out
  rows = [line for line in out.splitlines() if line.startswith('  MinAtar-')]
  assert len(rows) == 42 and all('| to run |' in row for row in rows)
  assert not root.exists()


def test_finished_runs_are_skipped_and_interrupted_ones_resumed(tmp_path, capsys, monkeypatch):
  args = (f'--root_dir={tmp_path}', '--games=MinAtar-Breakout', '--seeds=1', '--figures=3')
  runs = pf.make_plan(_flags(*args))['runs']
  by_method = {r.method: r for r in runs}
  assert list(by_method) == ['cql_vit', 'cql_vit_ts', 'cql_convnet']
  _write_run(by_method['cql_vit'], [(1000, 0.5), (2000, 1.5)])    # finished
  _write_run(by_method['cql_vit_ts'], [(1000, 0.5)])              # interrupted
  to_run, finished = pf.pending(runs)
  assert finished == [by_method['cql_vit']]
  assert to_run == [by_method['cql_vit_ts'], by_method['cql_convnet']]

  pf.run(_flags(*args, '--dry_run'))
  out = capsys.readouterr().out
  assert '1 runs finished already, 2 to run' in out
  status = {line.split(' | ')[1]: line.split(' | ')[5] for line in out.splitlines()
            if line.startswith('  MinAtar-')}
  assert status == {'cql_vit': 'finished', 'cql_vit_ts': 'resume', 'cql_convnet': 'to run'}

  started = []
  monkeypatch.setattr(experiments, 'run_scripts',
                      lambda jobs, parallel, echo: started.extend(jobs) or [])
  assert pf.train_all(runs, parallel=2) == []
  # The interrupted run gets its planned command again: train.py resumes its directory.
  assert started == [(f'MinAtar-Breakout {r.method} s0', r.command,
                      os.path.join(r.path, 'train.log'))
                     for r in (by_method['cql_vit_ts'], by_method['cql_convnet'])]


def test_run_directories_with_other_settings_stop_the_plan(tmp_path):
  runs = pf.make_plan(_flags(f'--root_dir={tmp_path}', '--games=MinAtar-Breakout',
                             '--seeds=1'))['runs']
  cql = next(r for r in runs if r.method == 'cql_vit')
  d3 = next(r for r in runs if r.method == 'd3rlpy_cql')
  _write_run(cql, [(2000, 1.0)], recorded={'fraction': 0.5})
  _write_run(d3, [(1000, 1.0)], recorded={'cql_alpha': 1.0})
  with pytest.raises(pf.PlanError) as error:
    pf.pending(runs)
  message = str(error.value)
  assert f'{cql.path}: fraction: 0.5 recorded, 0.1 planned' in message
  assert f'{d3.path}: cql_alpha: 1.0 recorded, 0.05 planned' in message
  assert 'another --root_dir' in message
  with pytest.raises(SystemExit, match='fraction: 0.5 recorded'):
    pf.run(_flags(f'--root_dir={tmp_path}', '--games=MinAtar-Breakout', '--seeds=1',
                  '--dry_run'))


def test_figures_at_another_alpha_reuse_data_and_bc_runs(tmp_path, capsys):
  root = str(tmp_path)
  base = ('--games=MinAtar-Breakout', '--seeds=1', '--figures=2', f'--root_dir={root}')
  study = {r.method: r for r in pf.make_plan(_flags(*base))['runs']}
  for run in study.values():
    _write_run(run, [(1000, 1.0), (2000, 2.0)])
  plan = pf.make_plan(_flags(*base, '--cql_alpha=0.5'))
  runs = {r.method: r for r in plan['runs']}
  game_dir = os.path.join(root, 'runs', 'MinAtar-Breakout')
  assert list(runs) == ['cql_vit alpha=0.5', 'cql_vit_ts alpha=0.5', 'bc_vit', 'bc_vit_ts',
                        'd3rlpy_cql alpha=0.5', 'd3rlpy_bc']
  assert runs['cql_vit alpha=0.5'].path == os.path.join(game_dir, 'cql_vit_cql_alpha0.5_s0')
  assert runs['d3rlpy_cql alpha=0.5'].path == os.path.join(game_dir,
                                                           'd3rlpy_cql_cql_alpha0.5_s0')
  # BC does not depend on alpha: the study's runs (finished) are this plan's too.
  for method in ('bc_vit', 'bc_vit_ts', 'd3rlpy_bc'):
    assert runs[method].path == study[method].path
  to_run, finished = pf.pending(plan['runs'])
  assert {r.method for r in finished} == {'bc_vit', 'bc_vit_ts', 'd3rlpy_bc'}
  values = _gin_values(runs['cql_vit_ts alpha=0.5'].command)
  assert values['CqlC51Agent.cql_alpha'] == 0.5
  assert values['train_eval.method'] == 'cql_vit_ts alpha=0.5'
  assert {k: values[k] for k in COMMON if k != 'CqlC51Agent.cql_alpha'} == {
      k: v for k, v in COMMON.items() if k != 'CqlC51Agent.cql_alpha'}
  d3 = runs['d3rlpy_cql alpha=0.5'].command
  assert (_arg(d3, 'cql_alpha'), _arg(d3, 'method')) == ('0.5', 'd3rlpy_cql alpha=0.5')
  assert [(name, len(rs)) for name, rs in plan['reports']] == [('figure2_cql_alpha0.5', 6)]
  # The study's directories keep their names; data and reference scores are shared.
  assert all(r.path == pf.run_dir(root, r.game, r.method, r.seed) for r in study.values())
  pf.run(_flags(*base, '--cql_alpha=0.5', '--dry_run'))
  assert '3 runs finished already, 3 to run' in capsys.readouterr().out
  # Both CQL-only settings name the runs; a setting BC shares keeps the names
  # (and the recorded-settings check stops a plan that would reuse them).
  both = pf.make_plan(_flags(*base, '--cql_alpha=2', '--target_update_period=50',
                             '--nod3rlpy'))
  assert [r.method for r in both['runs']] == [
      'cql_vit alpha=2 target=50', 'cql_vit_ts alpha=2 target=50', 'bc_vit', 'bc_vit_ts']
  assert both['runs'][0].path == os.path.join(
      game_dir, 'cql_vit_cql_alpha2_target_update_period50_s0')
  lr = pf.make_plan(_flags(*base, '--learning_rate=1e-4', '--nod3rlpy'))
  assert [r.path for r in lr['runs']] == [study[m].path for m in
                                          ('cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts')]
  assert lr['reports'][0][0] == 'figure2'
  with pytest.raises(pf.PlanError, match='learning_rate: 0.0003 recorded, 0.0001 planned'):
    pf.pending(lr['runs'])


def test_a_tag_keeps_a_variant_apart_and_shares_the_data(tmp_path):
  root = str(tmp_path)
  base = ('--games=MinAtar-Breakout', '--seeds=1', '--figures=2', '--nod3rlpy',
          f'--root_dir={root}')
  study = pf.make_plan(_flags(*base))['runs']
  for run in study:
    _write_run(run, [(2000, 1.0)])
  plan = pf.make_plan(_flags(*base, '--train_steps=6000', '--tag=updates6000'))
  runs = plan['runs']
  assert [r.path for r in runs] == [
      os.path.join(root, 'runs_updates6000', 'MinAtar-Breakout', f'{m}_s0')
      for m in ('cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts')]
  assert [r.method for r in runs] == ['cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts']
  assert [name for name, _ in plan['reports']] == ['figure2_updates6000']
  to_run, _ = pf.pending(runs)             # nothing recorded there: no conflict, all to run
  assert to_run == runs
  values = _gin_values(runs[2].command)
  assert values['train_eval.num_train_steps'] == 6000
  assert values['train_eval.data_source'] == f'dopamine:{pf.replay_dir(root, "MinAtar-Breakout")}'
  # Without the tag the same flags meet the study's runs, and the error says what to do.
  with pytest.raises(pf.PlanError, match='or, for the figures, a --tag'):
    pf.pending(pf.make_plan(_flags(*base, '--learning_rate=1e-4'))['runs'])
  both = pf.make_plan(_flags(*base, '--cql_alpha=0.5', '--tag=t'))
  assert both['reports'][0][0] == 'figure2_cql_alpha0.5_t'
  assert both['runs'][0].path == os.path.join(root, 'runs_t', 'MinAtar-Breakout',
                                              'cql_vit_cql_alpha0.5_s0')


@pytest.mark.parametrize('args, message', [
    (('--tag=a/b',), r"--tag: 'a/b' is not a plain name"),
    (('--tag=x', '--sweep'), r'--tag is for the figures'),
    (('--figures=2,5',), r"--figures: unknown \['5'\]; choose from \['2', '3', '4'\]"),
    (('--games=MinAtar-Breakout,NoSuchGame',), r'--games: .*NoSuchGame'),
    (('--games=Hopper-v5',), r'--games: Hopper-v5 is a continuous-control environment'),
    (('--extra_methods=bc_foo',), r"--extra_methods: unknown \['bc_foo'\]"),
    (('--sweep', '--sweep_game=NoSuchGame'), r'--sweep_game: .*NoSuchGame'),
    (('--sweep', '--sweep_cql_alpha=0.5,abc'), r"--sweep_cql_alpha: 'abc' is not a number"),
    (('--sweep', '--sweep_fraction=1.5'), r"--sweep_fraction: '1.5' is out of range"),
    (('--sweep', '--sweep_train_steps=2500.5'), r"--sweep_train_steps: '2500.5' is not a whole"),
])
def test_bad_flags_are_named(tmp_path, args, message):
  with pytest.raises(app.UsageError, match=message):
    pf.make_plan(_flags(f'--root_dir={tmp_path}', *args))


def test_sweep_varies_one_factor_at_a_time_around_the_defaults(tmp_path):
  root = str(tmp_path)
  plan = pf.make_plan(_flags(f'--root_dir={root}', '--sweep'))
  runs, points = plan['runs'], plan['sweep']['points']
  game = 'MinAtar-Breakout'                        # the first of --games
  assert plan['games'] == [game] and [n for n, _ in plan['reports']] == [f'sweep_{game}']
  labels = ['defaults', 'alpha=0.01', 'alpha=0.5', 'alpha=2', 'lr=1e-05 (Table 2)',
            'lr=0.0001', 'lr=0.001', 'target=50', 'target=2000 (Table 2)', 'updates=6000',
            'fraction=0.05 (Table 2)', 'fraction=0.3', 'fraction=1']
  assert [p.label for p in points] == labels
  assert [p.role for p in points if p.role] == ['defaults'] + ["Table 2's value"] * 3
  assert points[0].settings == pf.Settings()
  assert len(runs) == 2 * (len(labels) + 2) and len({r.path for r in runs}) == len(runs)
  assert [r.method for r in runs[:len(labels) + 2]] == [f'cql_vit {l}' for l in labels] + [
      'bc_vit', 'bc_vit updates=6000']
  # BC at 6,000 updates too: its own directory, BC's network, 6,000 updates.
  bc_long = runs[len(labels) + 1]
  assert bc_long.path == os.path.join(root, 'sweep', game, 'bc_vit_train_steps6000_s0')
  values = _gin_values(bc_long.command)
  assert (values['train_eval.num_train_steps'], values['train_eval.method']) == (
      6000, 'bc_vit updates=6000')
  assert tuple(values[k] for k in NETWORK_KEYS) == NETWORKS['bc_vit']
  # BC at the defaults is Figure 2's run: same directory and command as the study's.
  study = pf.make_plan(_flags(f'--root_dir={root}'))['runs']
  for bc in (r for r in runs if r.method == 'bc_vit'):
    assert bc in study
  keys = {'cql_alpha': 'CqlC51Agent.cql_alpha', 'learning_rate': 'CqlC51Agent.learning_rate',
          'target_update_period': 'CqlC51Agent.target_update_period',
          'train_steps': 'train_eval.num_train_steps', 'fraction': 'train_eval.fraction'}
  defaults = _gin_values(runs[0].command)
  assert {k: defaults[k] for k in COMMON} == COMMON
  assert runs[0].path == os.path.join(root, 'sweep', game, 'cql_vit_defaults_s0')
  for point, run in zip(points[1:], runs[1:len(labels)]):
    values = _gin_values(run.command)
    changed = {k for k in values if values[k] != defaults[k]} - {'train_eval.method'}
    if point.factor == 'learning_rate':        # both agents get the learning rate
      assert changed == {keys['learning_rate'], 'bc.BehavioralCloningAgent.learning_rate'}
    else:
      assert changed == {keys[point.factor]}, point
    assert values[keys[point.factor]] == point.value
    assert values['train_eval.method'] == f'cql_vit {point.label}'
    assert tuple(values[k] for k in NETWORK_KEYS) == NETWORKS['cql_vit']
    assert run.path == os.path.join(root, 'sweep', game, f'cql_vit_{point.suffix}_s0')
  assert {r.seed for r in runs} == {0, 1}


def test_sweep_flags_choose_values_game_and_method(tmp_path):
  plan = pf.make_plan(_flags(
      f'--root_dir={tmp_path}', '--sweep', '--sweep_game=MinAtar-SpaceInvaders',
      '--sweep_method=cql_vit_ts', '--sweep_seeds=1', '--sweep_cql_alpha=0.05,0.5',
      '--sweep_learning_rate=', '--sweep_target_update_period=', '--sweep_train_steps=',
      '--sweep_fraction='))
  # 0.05 is the default: it is the defaults point, not a second run.
  assert [r.method for r in plan['runs']] == ['cql_vit_ts defaults', 'cql_vit_ts alpha=0.5',
                                              'bc_vit_ts']
  assert {r.game for r in plan['runs']} == {'MinAtar-SpaceInvaders'}


def test_sweep_dry_run_and_estimate(tmp_path, capsys):
  pf.run(_flags(f'--root_dir={tmp_path}', '--sweep', '--dry_run'))
  out = capsys.readouterr().out
  assert ('Plan: sweep of cql_vit on MinAtar-Breakout, 2 seeds, 13 settings + bc_vit at the '
          'defaults and at updates=6000.') in out
  assert ('Defaults: cql_alpha 0.05 (= Table 2), learning_rate 0.0003 (Table 2: 1e-05), '
          'target_update_period 200 (Table 2: 2000)') in out
  assert 'about 61 min for the whole plan (runs 55 min' in out
  assert '| bc_vit updates=6000 | s1 | 6000 updates | ~8.0 min | to run |' in out
  assert '| cql_vit updates=6000 | s0 | 6000 updates | ~8.0 min | to run |' in out
  # Fraction 1.0 loads 90K transitions more than the measured 10K, at 5,300/s.
  runs = pf.make_plan(_flags(f'--root_dir={tmp_path}', '--sweep'))['runs']
  full = next(r for r in runs if r.method == 'cql_vit fraction=1')
  base = runs[0]
  assert pf.run_seconds(full, 100_000) - pf.run_seconds(base, 100_000) == pytest.approx(
      90_000 / 5_300)


def test_sweep_table_and_raw_table_say_which_is_which(tmp_path):
  plan = pf.make_plan(_flags(
      f'--root_dir={tmp_path}', '--sweep', '--sweep_seeds=1', '--sweep_cql_alpha=0.5',
      '--sweep_learning_rate=', '--sweep_target_update_period=', '--sweep_train_steps=4000',
      '--sweep_fraction=0.05'))
  runs = {r.method: r for r in plan['runs']}
  _write_run(runs['cql_vit defaults'], [(1000, 0.5), (2000, 1.0)])
  _write_run(runs['cql_vit alpha=0.5'], [(1000, 1.0), (2000, 2.0)])
  _write_run(runs['cql_vit fraction=0.05 (Table 2)'], [(1000, 3.0)])   # unfinished
  _write_run(runs['bc_vit'], [(2000, 1.5)])
  table = pf.sweep_table(plan['runs'], 'cql_vit', plan['sweep']['points'])
  assert '| cql_vit defaults | the defaults | 1.00 | [1.0] |  |' in table
  assert '| cql_vit alpha=0.5 | cql_alpha 0.5 | 2.00 | [2.0] | +1.00 |' in table
  assert ("| cql_vit fraction=0.05 (Table 2) | fraction 0.05, Table 2's value | (not run) |"
          in table)
  assert "| bc_vit | BC at the defaults (Figure 2's runs) | 1.50 | [1.5] | |" in table
  assert '| bc_vit updates=4000 | BC at train_steps 4000 | (not run) | | |' in table
  assert ('Best setting found (highest mean final return): `cql_vit alpha=0.5`, 2.00; '
          'the defaults: 1.00; bc_vit: 1.50.') in table
  # When more updates win, the best setting stands beside BC with as many updates.
  _write_run(runs['cql_vit updates=4000'], [(2000, 2.0), (4000, 3.0)])
  _write_run(runs['bc_vit updates=4000'], [(2000, 1.5), (4000, 2.5)])
  table = pf.sweep_table(plan['runs'], 'cql_vit', plan['sweep']['points'])
  assert '| bc_vit updates=4000 | BC at train_steps 4000 | 2.50 | [2.5] | |' in table
  assert ('Best setting found (highest mean final return): `cql_vit updates=4000`, 3.00; '
          'the defaults: 1.00; bc_vit updates=4000: 2.50.') in table
  scores = str(tmp_path / 'scores.json')
  normalization.write_reference_scores(
      scores, {'MinAtar-Breakout': normalization.ReferenceScores(random=0.5, dqn_replay=1.2)})
  raw = pf.raw_table(plan['runs'], scores)
  assert '| MinAtar-Breakout | (random play) | 0.50 | | |' in raw
  assert '| MinAtar-Breakout | cql_vit alpha=0.5 | 2.00 | [2.0] | 1000: 1.00, 2000: 2.00 |' in raw
  assert '| MinAtar-Breakout | cql_vit fraction=0.05 (Table 2) | (not run) | | |' in raw


def test_smoke_shrinks_everything_not_given(tmp_path):
  f = _flags('--smoke', '--sweep', '--sweep_seeds=2')
  pf.apply_smoke(f)
  assert (f.root_dir, f.games, f.seeds, f.train_steps, f.figures) == (
      'runs/paper_figures_smoke', ['MinAtar-Breakout'], 1, 100, ['2', '3', '4'])
  assert f.sweep_seeds == 2                      # given on the command line: kept
  f.root_dir = str(tmp_path)
  plan = pf.make_plan(f)
  assert [r.method for r in plan['runs'] if r.seed == 0] == [
      'cql_vit defaults', 'cql_vit alpha=0.5', 'cql_vit lr=0.001', 'cql_vit target=50',
      'cql_vit updates=200', 'cql_vit fraction=1', 'bc_vit', 'bc_vit updates=200']


def test_learning_benchmark_command_uses_the_shared_builder():
  fv = flags.FlagValues()
  learning.define_flags(fv)
  fv(['learning'])
  run_dir, command = learning.train_command('/r', '/d/replay_logs', 'MinAtar-Breakout',
                                            'bc_vit_ts', 2, f=fv)
  assert run_dir == '/r/runs/bc_vit_ts_s2' and _arg(command, 'root_dir') == run_dir
  values = _gin_values(command)
  assert tuple(values[k] for k in NETWORK_KEYS) == ('bc', 'vit_ts', 'none')
  assert [values[k] for k in RUN_KEYS] == ['bc_vit_ts', 2, 'MinAtar-Breakout',
                                           'dopamine:/d/replay_logs']
  assert (values['bc.BehavioralCloningAgent.learning_rate'], values['CqlC51Agent.learning_rate'],
          values['CqlC51Agent.target_update_period'], values['train_eval.batch_size'],
          values['train_eval.num_train_steps'], values['train_eval.checkpoint_interval'],
          values['train_eval.fraction'], values['CqlC51Agent.cql_alpha']) == (
              1e-3, 1e-3, 100, 64, 1200, 1200, 1.0, 0.05)
