r"""Q-Transformer on a Fetch dataset of a few demonstrations and many failed episodes.

  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/q_transformer.py --data_root=DATA \
      [--dataset_id=fetch/push-mixed-v0] [--methods=q_transformer,no_conservative,...] \
      [--seeds=3] [--train_steps=20000] [--root_dir=runs/q_transformer] [--smoke]

A skeleton (no experiment has been run with it yet). For each method and
seed: the Minari dataset (made by `launch/generate_fetch_data.py`) is written
once into an in-process Reverb window table (`reverb_windows.WindowServer`,
K = n, with s_{t+n} and the Monte-Carlo return-to-go), sampled in batches,
converted by `q_transformer.batch_from_window`, and trained with
`QTransformerAgent.train`; every `--eval_interval` updates the greedy policy
plays `--eval_episodes` episodes in a PyDriver and its success rate is
printed and appended to ROOT/METHOD/seed_S/eval.jsonl.

Methods: the agent of gin/q_transformer.gin ('q_transformer') and the paper's
ablations ('no_conservative', 'softmax', 'no_mc', 'one_step' =
gin/q_transformer_<name>.gin).

`--smoke`: makes a tiny FetchPush dataset under ROOT/smoke_data if needed
(10 demonstrations, 20 autonomous episodes), then 1 seed of 'q_transformer'
for 50 updates of a small model with one 2-episode evaluation.

Not done here: BC on the same transformer, DT and QT baselines, and the
IQM / CI report through launch/report.py (the runs' eval.jsonl records are
plain success rates per evaluation).
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
import gin
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # pylint: disable=g-import-not-at-top
from tf_agents.drivers import py_driver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import tensor_spec

from tf_offline_q.agents import q_transformer  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import minari_data
from tf_offline_q.data import reverb_windows
from tf_offline_q.envs import continuous
from tf_offline_q import files
from tf_offline_q import progress as progress_lib

flags.DEFINE_string('data_root', None, 'Minari datasets root (default ROOT/data).')
flags.DEFINE_string('dataset_id', 'fetch/push-mixed-v0', 'Minari dataset id.')
flags.DEFINE_string('root_dir', 'runs/q_transformer', 'Where runs go.')
flags.DEFINE_list('methods', ['q_transformer', 'no_conservative', 'softmax', 'no_mc',
                              'one_step'], 'Methods (gin/q_transformer[_<method>].gin).')
flags.DEFINE_integer('seeds', 3, 'Seeds per method.')
flags.DEFINE_integer('train_steps', 20000, 'Updates per run.')
flags.DEFINE_integer('eval_interval', 5000, 'Updates between evaluations.')
flags.DEFINE_integer('eval_episodes', 20, 'Episodes per evaluation.')
flags.DEFINE_integer('batch_size', 256, 'Batch size.')
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings (e.g. a smaller model).')
flags.DEFINE_bool('smoke', False, 'A tiny generated FetchPush dataset and a 50-update run.')
FLAGS = flags.FLAGS

SMOKE_BINDINGS = ['ActionTransformerQNetwork.width = 32', 'ActionTransformerQNetwork.num_heads = 2',
                  'ActionTransformerQNetwork.depth = 1', 'ActionTransformerQNetwork.num_bins = 32',
                  'ActionTransformerQNetwork.encoder_hidden = (64,)']


def gin_file(method):
  name = 'q_transformer.gin' if method == 'q_transformer' else f'q_transformer_{method}.gin'
  path = os.path.join(REPO, 'gin', name)
  if not os.path.exists(path):
    raise ValueError(f'Unknown method {method!r}: no {path}')
  return path


def smoke_data(root):
  """A tiny FetchPush dataset under ROOT/smoke_data (made once)."""
  data_root = os.path.join(root, 'smoke_data')
  dataset_id = 'fetch/push-smoke-v0'
  if not os.path.exists(os.path.join(data_root, dataset_id)):
    subprocess.run([sys.executable, os.path.join(REPO, 'launch', 'generate_fetch_data.py'),
                    f'--root={data_root}', f'--dataset_id={dataset_id}', '--num_demos=10',
                    '--num_autonomous=20', '--ref_episodes=2', '--episodes_per_chunk=10'],
                   check=True)
  return data_root, dataset_id


def evaluate(env, policy, episodes):
  """Success rate and mean return of `episodes` greedy episodes."""
  successes, returns = [], []

  def observer(trajectory):
    if trajectory.is_last():
      successes.append(float(env.last_episode['success']))
      returns.append(float(env.last_episode['return']))

  driver = py_driver.PyDriver(env, py_tf_eager_policy.PyTFEagerPolicy(policy, use_tf_function=True),
                              [observer], max_episodes=episodes)
  driver.run(env.reset())
  return float(np.mean(successes)), float(np.mean(returns))


def train_one(run_dir, method, seed, episodes, metadata, bindings):
  """Trains one agent; returns its evaluation records."""
  os.makedirs(run_dir, exist_ok=True)
  gin.clear_config()
  gin.parse_config_files_and_bindings([gin_file(method)], bindings, skip_unknown=True)
  tf.keras.utils.set_random_seed(seed)
  env = continuous.make_continuous_env(metadata['env_name'], seed=1000 + seed)
  time_step_spec = tensor_spec.from_spec(env.time_step_spec())
  action_spec = tensor_spec.from_spec(env.action_spec())
  observations = np.concatenate([e.observations for e in episodes])
  network_kwargs = dict(observation_mean=observations.mean(0),
                        observation_std=observations.std(0) + 1e-3)
  agent = q_transformer.make_agent(time_step_spec, action_spec, network_kwargs=network_kwargs)
  agent.initialize()
  layout = reverb_windows.WindowLayout(agent._n_step, metadata['obs_dim'], metadata['act_dim'],
                                       next_observation=True, gamma=agent._gamma)
  server = reverb_windows.WindowServer({'data': layout})
  try:
    stats = server.fill('data', episodes, source=metadata['dataset_id'])
    print(f'{method} seed {seed}: {stats.items:,} windows of {stats.episodes} episodes',
          flush=True)
    dataset = reverb_windows.make_window_dataset(server.address, 'data', layout,
                                                 FLAGS.batch_size)

    @tf.function
    def train_step(window):
      batch, weights = q_transformer.batch_from_window(window)
      return agent.train(batch, weights)

    records = []
    progress = progress_lib.Progress(f'{method} seed {seed}', FLAGS.train_steps, 'updates')
    iterator = iter(dataset)
    start = time.time()
    for step in range(1, FLAGS.train_steps + 1):
      info = train_step(next(iterator))
      progress.update(1)
      if step % FLAGS.eval_interval == 0 or step == FLAGS.train_steps:
        success, mean_return = evaluate(env, agent.policy, FLAGS.eval_episodes)
        extra = {k: float(v) for k, v in info.extra._asdict().items()}
        record = dict(method=method, seed=seed, step=step, success_rate=success,
                      mean_return=mean_return, seconds=time.time() - start, **extra)
        records.append(record)
        print(f'{method} seed {seed} step {step}: success {success:.2f} '
              f'(td {extra["td_loss"]:.4f}, q_data {extra["q_data"]:.3f}, '
              f'q_other {extra["q_other"]:.3f})', flush=True)
        files.atomic_write_text(os.path.join(run_dir, 'eval.jsonl'),
                                ''.join(json.dumps(r) + '\n' for r in records))
    progress.done()
    return records
  finally:
    server.stop()
    env.close()


def main(argv):
  del argv
  root = FLAGS.root_dir
  bindings = list(FLAGS.gin_bindings)
  if FLAGS.smoke:
    data_root, dataset_id = smoke_data(root)
    methods, seeds = ['q_transformer'], 1
    FLAGS.train_steps, FLAGS.eval_interval, FLAGS.eval_episodes = 50, 50, 2
    FLAGS.batch_size = 32
    bindings = SMOKE_BINDINGS + bindings
  else:
    data_root = FLAGS.data_root or os.path.join(root, 'data')
    dataset_id, methods, seeds = FLAGS.dataset_id, FLAGS.methods, FLAGS.seeds
  for method in methods:
    gin_file(method)  # unknown methods fail before any work
  try:
    episodes, metadata = minari_data.load_minari_dataset(data_root, dataset_id)
  except FileNotFoundError as error:
    raise SystemExit(f'{error}\nMake it with: python launch/generate_fetch_data.py '
                     f'--root={data_root} --dataset_id={dataset_id}') from error
  successes = sum(e.episode_return > 0 for e in episodes)
  print(f'{dataset_id}: {len(episodes)} episodes, {successes} successful', flush=True)
  summary = {}
  for method in methods:
    for seed in range(seeds):
      records = train_one(os.path.join(root, 'runs', method, f'seed_{seed}'), method, seed,
                          episodes, metadata, bindings)
      summary.setdefault(method, []).append(records[-1]['success_rate'])
  for method, rates in summary.items():
    print(f'{method}: final success rate {np.mean(rates):.2f} over {len(rates)} seeds '
          f'({", ".join(f"{r:.2f}" for r in rates)})')


if __name__ == '__main__':
  app.run(main)
