r"""One d3rlpy reference run (DiscreteCQL or DiscreteBC) beside the project's runs.

  python bench/d3rlpy_reference/run_reference.py --root_dir=RUN --algo=cql \
      --game=MinAtar-Breakout --data_source=dopamine:DATA/MinAtar-Breakout/1/replay_logs \
      --fraction=0.1 --seed=0 --num_train_steps=2000 --eval_interval=1000

Runs in the project venv; d3rlpy runs in its own (`setup_venv.py` makes it on
first use) as an action server (`server.py`, `protocol.py`):

  1. data: the transitions `launch/train.py` would train on with the same
     `data_source`, `fraction`, `subset_mode`, `data_seed`, `n_step` are
     exported from the project's reader (`export.py`; cached in
     `--transitions`, by default `RUN/transitions.npz`);
  2. training: the server draws `batch_size` of them uniformly per update
     and calls d3rlpy's `update`, `eval_interval` updates at a time;
  3. evaluation: the project's `evaluation.evaluate_policy` plays the game
     (`games.make_env(game, sticky_action_prob, full_action_space,
     max_episode_frames, seed=seed)`, made once as `train_eval` makes it;
     each evaluation seeded `seed + step` as `train_eval` seeds it; epsilon
     0.001 on top; Dopamine's finished last episode), asking the server for
     each greedy action (`client.ServerPolicy`).

Output, the project's run layout (so `launch/report.py` reads it beside ours):
RUN/run.json (method `d3rlpy_cql` / `d3rlpy_bc`), RUN/eval/returns.jsonl,
RUN/reference_config.json (settings, d3rlpy's config and versions),
RUN/d3rlpy/model.d3 (+ .json: step, sampler state; saved at every
evaluation), RUN/server.log (the server's stderr). Running the same command
again resumes from the saved model (evaluation records after it are
dropped); a finished run is left as it is.

Same as the project's runs: the transitions, the rewards' clipping (1.0), the
n-step return (n, gamma), the batch size, the number of updates, the
learning rate, the target-network period and CQL's alpha, the evaluation.
Not the same (d3rlpy's own): its network (the Nature-DQN convnet on x/255),
its scalar Q with a Huber TD loss and Double-DQN targets (ours: C51 with 51
atoms and a cross-entropy), Adam's epsilon (1e-8; Keras 1e-7), and
DiscreteBC's logit penalty `bc_beta` (0.5, d3rlpy's default).
"""
import json
import os
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from bench.d3rlpy_reference import client  # pylint: disable=g-import-not-at-top
from bench.d3rlpy_reference import export  # pylint: disable=g-import-not-at-top
from bench.d3rlpy_reference import setup_venv  # pylint: disable=g-import-not-at-top
from tf_offline_q import console  # pylint: disable=g-import-not-at-top

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, 'server.py')
ALGOS = ('cql', 'bc')
# Settings a resumed run must keep (budgets and intervals may change).
FIXED = ('algo', 'game', 'data_source', 'fraction', 'subset_mode', 'data_seed', 'n_step',
         'seed', 'batch_size', 'learning_rate', 'gamma', 'target_update_period', 'cql_alpha',
         'bc_beta', 'reward_clip', 'full_action_space', 'sticky_action_prob',
         'max_episode_frames', 'eval_epsilon')
CQL_ONLY = ('target_update_period', 'cql_alpha')   # DiscreteBC has neither


def define_flags():
  flags.DEFINE_string('root_dir', None, 'Run directory.')
  flags.DEFINE_enum('algo', 'cql', ALGOS, 'DiscreteCQL or DiscreteBC.')
  flags.DEFINE_string('method', None, 'Method name in reports (default d3rlpy_{algo}).')
  flags.DEFINE_string('game', 'MinAtar-Breakout', 'Game (evaluation environment).')
  flags.DEFINE_string('data_source', None, "As train_eval.data_source: 'dopamine:REPLAY_DIR'.")
  flags.DEFINE_float('fraction', 0.05, 'As train_eval.fraction.')
  flags.DEFINE_string('subset_mode', 'uniform', 'As train_eval.subset_mode.')
  flags.DEFINE_integer('data_seed', 0, 'As train_eval.data_seed.')
  flags.DEFINE_integer('n_step', 3, 'As train_eval.n_step (the n of the return).')
  flags.DEFINE_string('transitions', None, 'Exported transitions (default RUN/transitions.npz).')
  flags.DEFINE_integer('seed', 0, 'Seed of d3rlpy, the sampler and the evaluation.')
  flags.DEFINE_integer('batch_size', 32, 'As train_eval.batch_size.')
  flags.DEFINE_integer('num_train_steps', 3000, 'd3rlpy updates.')
  flags.DEFINE_float('learning_rate', 3e-4, 'Adam learning rate (local.gin: 3e-4).')
  flags.DEFINE_float('gamma', 0.99, 'Discount.')
  flags.DEFINE_integer('target_update_period', 200, 'CQL target copy period (updates).')
  flags.DEFINE_float('cql_alpha', 0.05, "CQL's alpha (ours, Table 2: 0.05; d3rlpy's default 1.0).")
  flags.DEFINE_float('bc_beta', 0.5, "DiscreteBC's logit penalty (d3rlpy's default).")
  flags.DEFINE_float('reward_clip', 1.0, 'Rewards clipped to [-c, c] (<= 0: off).')
  flags.DEFINE_integer('eval_interval', 1000, 'Updates between evaluations.')
  flags.DEFINE_integer('eval_steps', 1000, 'Agent steps per evaluation.')
  flags.DEFINE_integer('eval_max_episodes', None, 'Stop an evaluation after this many episodes.')
  flags.DEFINE_float('eval_epsilon', 0.001, 'Epsilon on top of the greedy policy.')
  flags.DEFINE_float('sticky_action_prob', 0.25, 'Sticky actions.')
  flags.DEFINE_integer('max_episode_frames', 20000, 'Frame cap per episode.')
  flags.DEFINE_bool('full_action_space', False, 'All actions instead of the minimal set.')
  flags.DEFINE_integer('progress_steps', 250, 'Updates per progress line.')
  flags.DEFINE_integer('threads', 1, 'torch threads of the server.')
  flags.DEFINE_string('venv', setup_venv.DEFAULT_VENV, "The d3rlpy venv (made if missing).")


def _settings(f) -> dict:
  names = FIXED + ('num_train_steps', 'eval_interval', 'eval_steps', 'eval_max_episodes',
                   'threads')
  return {name: getattr(f, name) for name in names}


def _check_resume(path: str, settings: dict):
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f).get('settings', {})
  fixed = [k for k in FIXED if not (settings['algo'] == 'bc' and k in CQL_ONLY)]
  changed = {k: (saved.get(k), settings[k]) for k in fixed if saved.get(k) != settings[k]}
  if changed:
    raise app.UsageError(
        f'{path} records other settings (' + ', '.join(
            f'{k}: saved {a!r}, now {b!r}' for k, (a, b) in changed.items())
        + '); use them, another --root_dir, or delete the run')


def run(f, python: str) -> list:
  """Trains and evaluates one run (settings from flags `f`); returns its eval records."""
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  from tf_offline_q.eval import evaluation  # pylint: disable=g-import-not-at-top
  game = games.canonical_game_name(f.game)
  run_dir = os.path.abspath(f.root_dir)
  os.makedirs(os.path.join(run_dir, 'd3rlpy'), exist_ok=True)
  method = f.method or f'd3rlpy_{f.algo}'
  settings = dict(_settings(f), game=game)
  config_path = os.path.join(run_dir, 'reference_config.json')
  _check_resume(config_path, settings)
  total = f.num_train_steps
  records = (evaluation.read_eval_records(run_dir)
             if os.path.exists(evaluation.returns_path(run_dir)) else [])
  if any(r['step'] >= total for r in records):
    print(f'{run_dir}: finished ({total} updates evaluated); nothing to do', flush=True)
    return records

  transitions_path = f.transitions or os.path.join(run_dir, 'transitions.npz')
  table = export.export(transitions_path, f.data_source, f.fraction, f.subset_mode,
                        f.data_seed, f.n_step, game=game)
  env = games.make_env(game, sticky_action_prob=f.sticky_action_prob,
                       full_action_space=f.full_action_space,
                       max_episode_frames=f.max_episode_frames, seed=f.seed)
  num_actions = int(env.action_spec().maximum) + 1
  actions_seen = int(table.action.max()) + 1
  if actions_seen > num_actions:
    raise ValueError(f'{transitions_path} holds action {actions_seen - 1}, outside the '
                     f'{num_actions} actions of {game}; set --full_action_space to match the data')
  command = [python, SERVER, f'--transitions={transitions_path}', f'--algo={f.algo}',
             f'--num_actions={num_actions}', f'--seed={f.seed}', f'--batch_size={f.batch_size}',
             f'--learning_rate={f.learning_rate}', f'--gamma={f.gamma}',
             f'--target_update_period={f.target_update_period}', f'--cql_alpha={f.cql_alpha}',
             f'--bc_beta={f.bc_beta}', f'--reward_clip={f.reward_clip}', f'--threads={f.threads}']
  model_path = os.path.join(run_dir, 'd3rlpy', 'model.d3')
  server_env = dict(os.environ, PYTHONUNBUFFERED='1')
  server_env.pop('PYTHONPATH', None)
  with client.ServerProcess(command, log_path=os.path.join(run_dir, 'server.log'),
                            env=server_env) as server:
    hello, _ = server.request('hello')
    evaluation.write_run_info(run_dir, game, method, f.seed, agent_type=f'd3rlpy_{f.algo}',
                              backbone='d3rlpy_nature_cnn', aggregation='none',
                              external='d3rlpy', versions=hello['versions'])
    evaluation.atomic_write_json(config_path, {'settings': settings, 'server': hello})
    step = 0
    if os.path.exists(model_path) and os.path.exists(model_path + '.json'):
      step = server.request('load', path=model_path)[0]['step']
      print(f'Resumed from {model_path} at step {step}', flush=True)
    kept = [r for r in records if r['step'] <= step]
    if len(kept) != len(records):
      evaluation.write_eval_records(run_dir, kept)
    print(f'{game} {method} seed {f.seed}: {hello["transitions"]} transitions, d3rlpy '
          f'{hello["versions"]["d3rlpy"]}, torch {hello["versions"]["torch"]}', flush=True)
    policy = client.ServerPolicy(server, env.time_step_spec(), env.action_spec())
    records = kept
    while step < total:
      boundary = min(total, (step // f.eval_interval + 1) * f.eval_interval)
      chunk = min(f.progress_steps, boundary - step)
      reply, _ = server.request('train', steps=chunk)
      step = int(reply['step'])
      rate = chunk / max(reply['seconds'], 1e-9)
      losses = ' '.join(f'{k}={v:.4g}' for k, v in reply['losses'].items())
      print(f'step {step}/{total}  {rate:.2f} steps/s  {losses}  '
            f'ETA {(total - step) / rate / 60:.1f} min', flush=True)
      if step % f.eval_interval == 0 or step == total:
        server.request('save', path=model_path)
        result = evaluation.evaluate_policy(
            policy, env, num_steps=f.eval_steps, epsilon=f.eval_epsilon,
            max_episodes=f.eval_max_episodes, seed=f.seed + step,
            progress=f'Evaluating {game} at step {step}')
        record = evaluation.make_eval_record(game, step, result)
        evaluation.append_eval_record(run_dir, record)
        records.append(record)
        print(f'eval step {step}: {game} mean return {record["mean_return"]:.2f} over '
              f'{len(result.returns)} episodes', flush=True)
  env.close()
  return records


def main(argv):
  del argv
  console.quiet_third_party()
  f = flags.FLAGS
  if not f.root_dir or not f.data_source:
    raise app.UsageError('--root_dir and --data_source are required')
  for name in ('num_train_steps', 'eval_interval', 'eval_steps', 'batch_size', 'n_step',
               'progress_steps'):
    if getattr(f, name) < 1:
      raise app.UsageError(f'--{name} must be >= 1')
  start = time.time()
  python = setup_venv.ensure_venv(f.venv)
  run(f, python)
  print(f'Done in {time.time() - start:.0f}s', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
