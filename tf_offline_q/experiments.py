"""Steps shared by `launch/demo.py` and the benchmarks in `bench/`.

Each step is what a user would type: launch scripts run as subprocesses (their
command printed first), so the demo and the benchmarks exercise the same entry
points as the README. The rest are small in-process helpers around them:

  run_script          one launch script, stopping the caller if it fails;
  run_scripts         several at once (at most `parallel`), each line of their
                      output prefixed with the job's name;
  scripted_mixture    a scripted-plus-random dataset (MinAtar-Breakout: the
                      one the micro models learn from on 2 cores);
  data_returns        returns of the finished episodes of a Dopamine dataset;
  random_returns      returns of uniform random play with the evaluation
                      protocol (the 0 of the normalised score);
  eval_records        a run's `eval/returns.jsonl`;
  train_command       a `launch/train.py` command line from gin files and
                      {gin parameter: Python value} bindings;
  dopamine_run_bindings  the bindings of a run on Dopamine-format data with
                      the paper's evaluation protocol (bench/learning.py and
                      bench/paper_figures.py).
"""
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tf_offline_q import console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env() -> Dict[str, str]:
  """The environment of launch scripts: TensorFlow's C++ INFO/WARNING lines off."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2'),
             PYTHONUNBUFFERED='1')
  filters = [f for f in (env.get('PYTHONWARNINGS'), console.python_warning_filters()) if f]
  env['PYTHONWARNINGS'] = ','.join(filters)
  return env


def _quoted(command: Sequence[str]) -> str:
  """The command as a shell line (gin bindings with quotes in double quotes)."""
  def quote(arg):
    if "'" in arg and not any(c in arg for c in '"$`\\!'):
      return f'"{arg}"'
    return shlex.quote(arg)
  return ' '.join(quote(c) for c in command)


def _relay(stream, log, prefix, lock):
  """Copies a child's output lines to `log` and the console, minus Reverb's
  informational server lines (`console.is_reverb_info`; they stay in `log`)."""
  for line in stream:
    if log:
      log.write(line)
      log.flush()
    if prefix is not None and not console.is_reverb_info(line):
      with lock:
        print(f'{prefix}{line}', end='', flush=True)


def run_script(*command: str, caller: str = 'demo') -> float:
  """Runs `python command...` from the repository root; returns its wall time.

  Exits the calling process (naming the script) if the script fails; the
  script's own error message is already on the console.
  """
  print(f'\n$ python {_quoted(command)}', flush=True)
  start = time.time()
  proc = subprocess.Popen([sys.executable, *command], cwd=REPO, env=script_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1)
  _relay(proc.stdout, None, '  ', threading.Lock())
  if proc.wait():
    sys.exit(f'{caller}: step failed (exit {proc.returncode}): {command[0]}')
  elapsed = time.time() - start
  print(f'  ({elapsed:.0f}s)', flush=True)
  return elapsed


def run_scripts(jobs: Sequence[Tuple[str, Sequence[str], Optional[str]]], parallel: int = 2,
                echo: bool = True) -> List[Tuple[str, int]]:
  """Runs launch scripts, at most `parallel` at a time.

  Args:
    jobs: (name, command, log_path) per job; the command's output goes to
      `log_path` (if given) and, when `echo`, to the console with each line
      prefixed by `[name]`.
    parallel: processes at a time.
    echo: copy the jobs' output to the console.
  Returns:
    (name, exit code) of every job that failed.
  """
  pending = list(jobs)
  running = {}
  failed = []
  lock = threading.Lock()

  while pending or running:
    while pending and len(running) < parallel:
      name, command, log_path = pending.pop(0)
      log = None
      if log_path:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        log = open(log_path, 'a', encoding='utf-8')
      with lock:
        print(f'[{name}] $ python {_quoted(command)}', flush=True)
      proc = subprocess.Popen([sys.executable, *command], cwd=REPO, env=script_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              bufsize=1)
      prefix = f'[{name}] ' if echo else None
      thread = threading.Thread(target=_relay, args=(proc.stdout, log, prefix, lock),
                                daemon=True)
      thread.start()
      running[proc] = (name, log, thread, time.time())
    time.sleep(0.5)
    for proc in list(running):
      if proc.poll() is None:
        continue
      name, log, thread, start = running.pop(proc)
      thread.join()
      if log:
        log.close()
      status = 'done' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'
      with lock:
        print(f'[{name}] {status} in {time.time() - start:.0f}s', flush=True)
      if proc.returncode:
        failed.append((name, proc.returncode))
  return failed


def scripted_mixture(root: str, game: str, data_steps: int, behaviour_epsilon: float = 0.1,
                     mixture_random_prob: float = 0.5, max_episode_frames: int = 2000,
                     scripted_aim: str = 'follow', caller: str = 'demo') -> Tuple[str, str]:
  """Makes (or reuses) a scripted-plus-random dataset of `game` under `root`.

  Each episode is played at random with probability `mixture_random_prob`,
  else by the game's scripted policy (`tf_offline_q.envs.scripted`; on
  MinAtar-Breakout `scripted_aim='follow'` follows the rising ball's column,
  'bounce' aims where it lands after the bricks) with `behaviour_epsilon`
  random actions. Rewards are stored raw (the agents clip them), so the data's
  average episode return is the behaviour's game score. Every played step is
  kept (the circular buffer is sized for the episodes' padding entries).

  Returns:
    (replay_dir, policy_dir): the Dopamine files and the exported scripted policy.
  """
  policy_dir = os.path.join(root, 'scripted_policy')
  if not os.path.isdir(policy_dir):
    from tf_offline_q.envs import scripted  # pylint: disable=g-import-not-at-top
    options = {}
    if game == 'MinAtar-Breakout':
      options['bounce_row'] = None if scripted_aim == 'follow' else 3
    scripted.export_scripted_policy(game, policy_dir, **options)
    print(f'Exported the scripted {game} policy to {policy_dir}', flush=True)
  data_root = os.path.join(root, 'data')
  replay_dir = os.path.join(data_root, game, '1', 'replay_logs')
  from tf_offline_q.data import replay_writer  # pylint: disable=g-import-not-at-top
  held = replay_writer.describe_dataset(replay_dir)
  if held is not None and held.endswith('unfinished'):
    print(f'{replay_dir} holds an unfinished dataset ({held}); generating it again', flush=True)
  if held is None or held.endswith('unfinished'):
    run_script('launch/generate_dqn_replay.py', f'--root_dir={data_root}', f'--game={game}',
               f'--num_steps={data_steps}', f'--checkpoint_every={data_steps}',
               f'--replay_capacity={data_steps + data_steps // 4}',
               '--nofull_action_space', '--noclip_rewards', '--policy=mixture',
               f'--policy_dir={policy_dir}', f'--epsilon={behaviour_epsilon}',
               f'--mixture_random_prob={mixture_random_prob}',
               f'--max_episode_frames={max_episode_frames}', '--seed=0',
               *(['--overwrite'] if held is not None else []), caller=caller)
  return replay_dir, policy_dir


def data_returns(replay_dir: str) -> Tuple[List[float], int]:
  """(returns of the finished episodes, total steps) of a Dopamine dataset."""
  from tf_offline_q.data import dqn_replay  # pylint: disable=g-import-not-at-top
  returns, steps = [], 0
  for episode in dqn_replay.iterate_episodes(replay_dir):
    steps += len(episode)
    if episode.terminal:
      returns.append(float(np.sum(episode.reward)))
  return returns, steps


def random_returns(game: str, episodes: int, max_episode_frames: int,
                   seed: int = 12345) -> List[float]:
  """Returns of uniform random play with the evaluation protocol (sticky
  actions 0.25, the game's minimal action set), `episodes` whole episodes."""
  from tf_agents.policies import random_py_policy  # pylint: disable=g-import-not-at-top
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  from tf_offline_q.eval import evaluation  # pylint: disable=g-import-not-at-top
  env = games.make_env(game, sticky_action_prob=0.25, full_action_space=False,
                       max_episode_frames=max_episode_frames, seed=seed)
  try:
    policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(),
                                             seed=seed)
    result = evaluation.evaluate_policy(policy, env, num_steps=sys.maxsize, epsilon=0.001,
                                        max_episodes=episodes, seed=seed)
  finally:
    env.close()
  return list(result.returns)


def eval_records(run_dir: str) -> List[dict]:
  """The evaluation records of a run (`eval/returns.jsonl`), oldest first."""
  path = os.path.join(run_dir, 'eval', 'returns.jsonl')
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


def train_command(run_dir: str, gin_files: Sequence[str],
                  bindings: Mapping[str, Any]) -> List[str]:
  """`launch/train.py` for `run_dir` (repository-relative script path).

  Args:
    run_dir: the run directory (`--root_dir`).
    gin_files: gin files in order (bare names are looked up in gin/).
    bindings: {gin parameter: Python value}, in order; each value is written
      as a gin literal (`repr`: strings quoted, numbers and booleans as Python
      writes them), after the gin files, so it overrides them.
  Returns:
    The command line, without the Python interpreter.
  """
  return ['launch/train.py', f'--root_dir={run_dir}',
          *(f'--gin_file={name}' for name in gin_files),
          *(f'--gin_bindings={name}={value!r}' for name, value in bindings.items())]


def dopamine_run_bindings(game: str, replay_dir: str, method: str, seed: int, *,
                          train_steps: int, batch_size: int, learning_rate: float,
                          target_update_period: int, eval_interval: int, eval_steps: int,
                          eval_max_episodes: int, max_episode_frames: int,
                          checkpoint_interval: int) -> Dict[str, Any]:
  """train.py bindings of one run on Dopamine-format data (`replay_dir`).

  The paper's evaluation protocol (sticky actions 0.25, epsilon 0.001, the
  game's minimal action set) on a reduced budget; both agents (CQL and BC)
  with the same learning rate; no policy export during training (only the
  final one if `policies/` holds an export). Callers add their own bindings
  (data subset, cql_alpha, backbone, ...) to the returned dict.
  """
  return {
      'train_eval.game': game,
      'train_eval.data_source': f'dopamine:{replay_dir}',
      'train_eval.method': method,
      'train_eval.seed': seed,
      'train_eval.num_train_steps': train_steps,
      'train_eval.batch_size': batch_size,
      'train_eval.eval_interval': eval_interval,
      'train_eval.eval_steps': eval_steps,
      'train_eval.eval_max_episodes': eval_max_episodes,
      'train_eval.max_episode_frames': max_episode_frames,
      'train_eval.eval_epsilon': 0.001,
      'train_eval.sticky_action_prob': 0.25,
      'train_eval.full_action_space': False,
      'train_eval.policy_save_interval': 0,
      'train_eval.checkpoint_interval': checkpoint_interval,
      'CqlC51Agent.learning_rate': learning_rate,
      'CqlC51Agent.target_update_period': target_update_period,
      'bc.BehavioralCloningAgent.learning_rate': learning_rate,
  }
