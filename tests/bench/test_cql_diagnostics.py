"""bench/cql_diagnostics.py on run directories written like train.py's."""
import json
import math
import os

from absl import app
from absl import flags
import pytest
import tensorflow as tf

from bench import cql_diagnostics as diag


def _fake_run(path, game='MinAtar-Breakout', full_action_space=False, cql=None, eval_return=2.5):
  """RUN/train events (Losses/* as the CQL agent writes them), run_config.json, eval records."""
  os.makedirs(os.path.join(path, 'eval'))
  with open(os.path.join(path, 'run_config.json'), 'w') as f:
    json.dump({'fixed': {'game': game, 'full_action_space': full_action_space}}, f)
  with open(os.path.join(path, 'eval', 'returns.jsonl'), 'w') as f:
    f.write(json.dumps({'game': game, 'step': 100, 'mean_return': eval_return,
                        'returns': [eval_return], 'normalized': None}) + '\n')
  writer = tf.summary.create_file_writer(os.path.join(path, 'train'))
  with writer.as_default():
    for step in range(10, 101, 10):
      if cql is not None:
        tf.summary.scalar('Losses/cql_loss', cql(step), step=step)
        tf.summary.scalar('Losses/q_data', step / 100, step=step)
        tf.summary.scalar('Losses/logsumexp_q', 1.0, step=step)
      tf.summary.scalar('Losses/loss', 1.0, step=step)
  writer.close()


def test_tail_means_margin_and_action_count(tmp_path):
  run = str(tmp_path / 'MinAtar-Breakout' / 'cql_vit_s0')
  _fake_run(run, cql=lambda step: 2.0 if step <= 80 else 1.0)
  row = diag.diagnose(run, tail=0.2)        # the last 20 of 100 updates: steps 90 and 100
  assert row['step'] == 100 and row['final_return'] == 2.5
  assert row['cql_loss'] == pytest.approx(1.0)
  assert row['log_actions'] == pytest.approx(math.log(3))     # Breakout's minimal set
  assert row['margin'] == pytest.approx(math.log(3) - 1.0)
  assert row['q_data'] == pytest.approx((0.9 + 1.0) / 2)
  assert diag.diagnose(run, tail=1.0)['cql_loss'] == pytest.approx((8 * 2.0 + 2 * 1.0) / 10)
  assert '| MinAtar-Breakout/cql_vit_s0 | 100 | 2.50 | 1.000 | +0.099 (ln|A| 1.099) | 0.95 |' in (
      diag.table([row]))
  full = str(tmp_path / 'full')
  _fake_run(full, full_action_space=True, cql=lambda step: 1.0)
  assert diag.diagnose(full, tail=0.1)['log_actions'] == pytest.approx(math.log(6))


def test_a_run_without_cql_summaries_is_named(tmp_path, capsys):
  bc = str(tmp_path / 'bc_vit_s0')
  _fake_run(bc, cql=None)
  with pytest.raises(ValueError, match='bc_vit_s0: no Losses/cql_loss'):
    diag.diagnose(bc, tail=0.1)
  cql = str(tmp_path / 'cql_vit_s0')
  _fake_run(cql, cql=lambda step: 1.0)
  fv = flags.FlagValues()
  diag.define_flags(fv)
  fv(['cql_diagnostics', f'--runs={tmp_path}/*_s0'])
  diag.run(fv)
  out = capsys.readouterr().out
  assert 'skipped: ' in out and 'bc_vit_s0: no Losses/cql_loss' in out
  assert '| tmp_path' not in out and 'cql_vit_s0 | 100 | 2.50 | 1.000 |' in out
  fv = flags.FlagValues()
  diag.define_flags(fv)
  fv(['cql_diagnostics', f'--runs={tmp_path}/nothing*'])
  with pytest.raises(app.UsageError, match="--runs: '.*nothing\\*' matches no directory"):
    diag.run(fv)
