"""launch/generate_locomotion_data.py and tf_offline_q.data.sac_online, tiny budgets.

One tiny SAC run on Hopper-v5 (8-unit MLPs, time limit 25 so that episodes
end both by terminations and by truncations) is killed with SIGKILL part-way
and resumed; the other tests reuse it.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.data import conftest
from tf_offline_q.data import minari_data
from tf_offline_q.data import sac_online

SCRIPT = os.path.join(conftest.REPO, 'launch', 'generate_locomotion_data.py')
TOTAL_STEPS = 500
INITIAL = 100
BATCH = 16
RUN_FLAGS = [f'--expert_steps={TOTAL_STEPS}', '--hidden=8,8', f'--batch_size={BATCH}',
             f'--initial_collect_steps={INITIAL}', '--replay_capacity=4000',
             '--eval_interval=150', '--eval_episodes=2', '--checkpoint_interval=100',
             '--log_interval=200', '--max_episode_steps=25', '--seed=3']


def _command(root, *args):
  return [sys.executable, SCRIPT, f'--root={root}', *args]


def _run(root, *args, expect_error=False, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(_command(root, *args), cwd=conftest.REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if expect_error:
    assert proc.returncode != 0, proc.stdout
    return proc.stderr
  assert proc.returncode == 0, f'{proc.stdout}\n{proc.stderr[-4000:]}'
  return proc.stdout


def _state(run_dir):
  path = os.path.join(run_dir, sac_online.STATE_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def killed_run(tmp_path_factory):
  """(root, run_dir, stdout of the resumed run): killed after a checkpoint, then re-run."""
  root = str(tmp_path_factory.mktemp('locomotion'))
  run_dir = os.path.join(root, 'sac_runs', 'Hopper-v5-seed3')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.Popen(_command(root, '--train_only', *RUN_FLAGS), cwd=conftest.REPO,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 240
  try:
    while True:
      state = _state(run_dir)
      if state and state['env_step'] >= 150:
        break
      if proc.poll() is not None or time.time() > deadline:
        raise AssertionError(f'the run ended or stalled before a checkpoint:\n'
                             f'{proc.stderr.read()[-3000:]}')
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # Only the process this test started.
  finally:
    proc.kill()
    proc.wait()
  killed_at = _state(run_dir)['env_step']
  assert 0 < killed_at < TOTAL_STEPS, 'the run finished before it could be killed'
  out = _run(root, '--train_only', *RUN_FLAGS)
  return root, run_dir, killed_at, out


def _log_arrays(run_dir, num_segments):
  log = sac_online.TransitionLog(os.path.join(run_dir, 'transitions'))
  segments = [log.read_segment(i) for i in range(num_segments)]
  return {k: np.concatenate([s[k] for s in segments]) for k in segments[0]
          if k != 'first_env_step'}


def test_killed_run_resumes_from_its_checkpoint(killed_run, tmp_path):
  root, run_dir, killed_at, out = killed_run
  # The command that was killed is resumed from the last committed state.
  resumed = int(out.split('resumed at env step ')[1].split()[0])
  assert resumed == killed_at  # the state.json committed before the kill
  state = _state(run_dir)
  assert state['env_step'] == TOTAL_STEPS
  # Exactly one gradient step per env step once training starts: no step was
  # counted twice across the kill (an uninterrupted run takes the same number).
  assert state['train_step'] == TOTAL_STEPS - max(INITIAL, BATCH) + 1
  # Every transition once, in order.
  log = sac_online.TransitionLog(os.path.join(run_dir, 'transitions'))
  assert log.segment_indices() == list(range(state['num_segments']))
  episodes = list(log.episodes(state['num_segments']))
  assert sum(e.length for e in episodes) == TOTAL_STEPS
  steps = [r['env_step'] for r in state['evals']]
  assert steps == sorted(set(steps)) and steps[-1] == TOTAL_STEPS

  # An uninterrupted run with the same configuration gives the same counts.
  config = sac_online.SacConfig(hidden=(8, 8), batch_size=BATCH, initial_collect_steps=INITIAL,
                                replay_capacity=4000)
  from tf_offline_q.envs import continuous  # pylint: disable=g-import-not-at-top
  env_fn = lambda seed: continuous.make_continuous_env('Hopper-v5', seed=seed,
                                                       max_episode_steps=25)
  run = sac_online.SacRun(str(tmp_path / 'straight'), env_fn, 'Hopper-v5', config, seed=3,
                          eval_interval=150, eval_episodes=2, checkpoint_interval=100,
                          log_interval=10_000, print_fn=lambda line: None)
  try:
    straight = run.train(TOTAL_STEPS)
  finally:
    run.close()
  straight_episodes = list(run.log.episodes(straight['num_segments']))
  assert sum(e.length for e in straight_episodes) == TOTAL_STEPS
  assert straight['train_step'] == state['train_step']

  # Learning curve beside the data: one row per evaluation.
  with open(os.path.join(run_dir, sac_online.LEARNING_CURVE_CSV)) as f:
    rows = list(csv.DictReader(f))
  assert [int(r['env_step']) for r in rows] == steps


def test_datasets_medium_replay_and_reference_scores(killed_run):
  root, run_dir, _, _ = killed_run
  # A tiny SAC run need not reach a third of the expert's return (an earlier
  # run's best evaluation stayed below random play), so the medium stop is a
  # raw return every evaluation reaches: the first evaluation is the snapshot.
  out = _run(root, '--kind=all', '--num_steps=120', '--ref_episodes=3', '--medium_return=-1e9',
             *RUN_FLAGS)
  assert 'already at env step' in out  # the finished run is reused, not retrained
  with open(os.path.join(run_dir, 'references.json')) as f:
    refs = json.load(f)
  assert refs['expert_env_step'] == TOTAL_STEPS
  state = _state(run_dir)

  loaded = {}
  for kind in ('random', 'medium', 'medium-replay', 'expert'):
    dataset_id = f'tf_offline_q/hopper-{kind}-v0'
    assert os.path.isdir(os.path.join(root, 'tf_offline_q', f'hopper-{kind}-v0', 'data'))
    episodes, meta = minari_data.load_minari_dataset(root, dataset_id, env_name='Hopper-v5')
    assert meta['ref_min_score'] == pytest.approx(refs['ref_min_score'])
    assert meta['ref_max_score'] == pytest.approx(refs['ref_max_score'])
    assert np.isfinite(meta['ref_min_score']) and np.isfinite(meta['ref_max_score'])
    for e in episodes:  # exactly one end flag, at the last step
      ends = e.terminations | e.truncations
      assert ends[-1] and not ends[:-1].any()
      assert not (e.terminations & e.truncations).any()
    loaded[kind] = (episodes, meta)
  for kind in ('random', 'medium', 'expert'):
    assert loaded[kind][1]['num_steps'] == 120

  # medium: the first evaluation reaching --medium_return.
  threshold = -1e9
  medium_step = next(r['env_step'] for r in state['evals'] if r['eval_return'] >= threshold)
  assert f'snapshot at env step {medium_step}' in out

  # medium-replay: every transition the run played up to the medium snapshot,
  # in order, with the log's termination / truncation flags.
  episodes, meta = loaded['medium-replay']
  assert meta['num_steps'] == medium_step
  log = _log_arrays(run_dir, state['num_segments'])
  data_obs = np.concatenate([e.observations[:-1] for e in episodes])
  data_next = np.concatenate([e.observations[1:] for e in episodes])
  np.testing.assert_array_equal(data_obs, log['observations'][:medium_step])
  np.testing.assert_array_equal(data_next, log['next_observations'][:medium_step])
  np.testing.assert_array_equal(np.concatenate([e.actions for e in episodes]),
                                log['actions'][:medium_step])
  np.testing.assert_array_equal(np.concatenate([e.rewards for e in episodes]),
                                log['rewards'][:medium_step])
  terms = np.concatenate([e.terminations for e in episodes])
  truncs = np.concatenate([e.truncations for e in episodes])
  np.testing.assert_array_equal(terms, log['terminations'][:medium_step])
  np.testing.assert_array_equal(truncs, log['truncations'][:medium_step])
  # Both kinds of ends occur: Hopper falls (termination) or hits the 25-step limit.
  assert terms.any() and truncs.any()
  # Truncations are the 25-step time limit (or the cut at the end of the run).
  limit_cut = [e.length for e in episodes if e.truncations[-1]]
  if medium_step == TOTAL_STEPS:
    limit_cut = limit_cut[:-1]
  assert limit_cut and set(limit_cut) == {25}

  # A medium return no evaluation reached: a clear error.
  with pytest.raises(ValueError, match='No evaluation of the SAC run reached the medium'):
    sac_online.medium_snapshot(state['evals'], refs, medium_return=1e9)
  # Existing datasets are not replaced without --overwrite.
  err = _run(root, '--kind=random', *RUN_FLAGS, expect_error=True)
  assert 'tf_offline_q/hopper-random-v0' in err and '--overwrite' in err


def test_resuming_with_another_configuration_is_refused(killed_run):
  _, run_dir, _, _ = killed_run
  config = sac_online.SacConfig(hidden=(16, 16), batch_size=BATCH,
                                initial_collect_steps=INITIAL, replay_capacity=4000)
  with pytest.raises(ValueError, match='another configuration.*hidden'):
    sac_online.SacRun(run_dir, lambda seed: None, 'Hopper-v5', config)
  with pytest.raises(ValueError, match="a run on 'Hopper-v5', not 'Walker2d-v5'"):
    sac_online.SacRun(run_dir, lambda seed: None, 'Walker2d-v5', config)


@pytest.mark.parametrize('args,message', [
    (['--kind=medium,bogus'], "unknown 'bogus'"),
    ([], '--kind is required'),
    (['--kind=random', '--env=PointMaze_UMaze-v3'], 'not a locomotion environment'),
    (['--kind=random', '--medium_fraction=1.5'], '--medium_fraction must be in (0, 1)'),
    (['--kind=random', '--hidden=a,b'], '--hidden must be comma-separated integers'),
    (['--kind=random', '--num_steps=0'], '--num_steps must be >= 1'),
])
def test_bad_flags(tmp_path, args, message):
  err = _run(str(tmp_path), *args, expect_error=True, timeout=120)
  assert message in err


def test_missing_root_is_an_error(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, SCRIPT, '--kind=random'], cwd=conftest.REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and '--root is required' in proc.stderr


def test_transition_log_rejects_a_cut_inside_an_episode_and_a_gap(tmp_path):
  log = sac_online.TransitionLog(str(tmp_path))
  obs = np.arange(12, dtype=np.float32).reshape(6, 2)
  for t, end in enumerate([False, False, True, False, False, True]):
    log.append(obs[t], np.zeros(3, np.float32), 1.0, obs[t] + 1 if t in (2, 5) else obs[t + 1],
               end, False)
  log.flush(0, first_env_step=0)
  episodes = list(log.episodes(1))
  assert [e.length for e in episodes] == [3, 3]
  assert [e.length for e in log.episodes(1, stop_env_step=3)] == [3]
  with pytest.raises(ValueError, match='inside an episode'):
    list(log.episodes(1, stop_env_step=4))
  with pytest.raises(ValueError, match='missing'):
    list(log.episodes(2))
  log.append(obs[0], np.zeros(3, np.float32), 1.0, obs[1], True, False)
  log.flush(1, first_env_step=7)  # should start at 6
  with pytest.raises(ValueError, match='starts at env step 7, expected 6'):
    list(log.episodes(2))
  with pytest.raises(RuntimeError, match='episode end'):
    log.append(obs[0], np.zeros(3, np.float32), 1.0, obs[1], False, False)
    log.flush(2, first_env_step=7)
