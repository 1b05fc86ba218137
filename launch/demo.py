r"""`make demo`: offline Q-learning end to end on 2 CPU cores, with learning you can see.

1. makes a dataset with real signal: MinAtar Breakout (drawn as Atari-shaped
   84x84 frames, so the ALE pipeline runs unchanged), each episode played
   either at random or by a scripted player with 10% random actions, written
   as Dopamine DQN-Replay files by `launch/generate_dqn_replay.py`;
2. measures random play with the evaluation protocol: the 0 of the normalised
   score (1.0 = the dataset's average return, Table 3's meaning);
3. trains micro-ViT CQL (C51, n-step 3, cql_alpha 0.5) and micro-ViT BC on it
   with `launch/train.py`, two processes side by side, through Reverb, with
   TensorBoard summaries, checkpoints, periodic evaluation (sticky actions,
   epsilon 0.001) and a SavedModel of the trained policy;
4. writes the report (`launch/report.py`: normalised IQM with bootstrap CIs,
   learning curves, performance profiles);
5. replays each exported SavedModel with `launch/evaluate.py`, in a fresh
   process, and prints its score beside the final in-training evaluation.

  python launch/demo.py --root_dir=runs/demo [--train_steps=2400] [--methods=cql_vit,bc_vit]

Settings for this scale (README, "The demo"): the micro model with local.gin's
Adam 3e-4 and CQL target period 200, batch 64, and cql_alpha 0.5 instead of
Table 2's 0.05. Measured on this data with 2,400 updates (mean return over 100
evaluation episodes at updates 600 / 1200 / 1800 / 2400; random play 0.45):
  alpha 0.05, Adam 1e-3, target 100, seed 0:  0.69 / 1.66 / 1.07 / 0.76
  alpha 0.5,  Adam 1e-3, target 100, seeds 0, 1, 2, final: 2.96, 3.01, 0.57
  alpha 2.0,  Adam 1e-3, target 100, seed 0:  1.36 / 1.63 / 2.65 / 1.34
  alpha 0.5,  Adam 3e-4, target 200, seed 0:  1.58 / 1.07 / 1.86 / 2.37
  alpha 0.5,  Adam 3e-4, target 200, seed 2:  1.15 / 1.67 / 1.65 / 2.75
  BC,         Adam 3e-4,             seed 0:  1.30 / 2.95 / 2.08 / 1.89
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import experiments  # pylint: disable=g-import-not-at-top

GAME = 'MinAtar-Breakout'
GIN_FILES = {'cql_vit': 'vit_none.gin', 'bc_vit': 'bc_vit.gin',
             'cql_vit_ts': 'vit_ts_none.gin', 'bc_vit_ts': 'bc_vit_ts.gin',
             'cql_convnet': 'convnet.gin'}

flags.DEFINE_string('root_dir', 'runs/demo', 'Where data, runs and the report go.')
flags.DEFINE_list('methods', ['cql_vit', 'bc_vit'], f'Methods to train: {sorted(GIN_FILES)}.')
flags.DEFINE_integer('data_steps', 20000, 'Agent steps of generated data.')
flags.DEFINE_integer('train_steps', 2400, 'Gradient updates per method.')
flags.DEFINE_integer('eval_interval', 600, 'Updates between evaluations.')
flags.DEFINE_integer('eval_steps', 3000, 'Agent steps per evaluation (paper: 125K).')
flags.DEFINE_integer('eval_max_episodes', 100, 'Stop an evaluation after this many episodes.')
flags.DEFINE_float('cql_alpha', 0.5, 'CQL regulariser weight (Table 2: 0.05; see above).')
flags.DEFINE_integer('max_episode_frames', 2000, 'Frame cap per episode.')
flags.DEFINE_integer('random_episodes', 300, 'Episodes of random play measured.')
flags.DEFINE_integer('seed', 0, 'Seed of the training runs.')
FLAGS = flags.FLAGS


def train_command(run_dir, replay_dir, method):
  return experiments.train_command(run_dir, [GIN_FILES[method], 'local.gin'], {
      'train_eval.game': GAME,
      'train_eval.data_source': f'dopamine:{replay_dir}',
      'train_eval.method': method,
      'train_eval.seed': FLAGS.seed,
      'train_eval.num_train_steps': FLAGS.train_steps,
      'train_eval.batch_size': 64,
      'train_eval.steps_per_run': max(1, FLAGS.eval_interval // 4),
      'train_eval.eval_interval': FLAGS.eval_interval,
      'train_eval.eval_steps': FLAGS.eval_steps,
      'train_eval.eval_max_episodes': FLAGS.eval_max_episodes,
      'train_eval.max_episode_frames': FLAGS.max_episode_frames,
      'train_eval.full_action_space': False,
      'train_eval.checkpoint_interval': FLAGS.eval_interval,
      'train_eval.policy_save_interval': FLAGS.train_steps,
      'CqlC51Agent.cql_alpha': FLAGS.cql_alpha,
  })


def _mean_sem(returns):
  returns = np.asarray(returns, np.float64)
  sem = returns.std(ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else float('nan')
  return f'{returns.mean():5.2f} +- {sem:.2f} ({len(returns)} episodes)'


def main(argv):
  del argv
  console.quiet_third_party()
  start = time.time()
  unknown = sorted(set(FLAGS.methods) - set(GIN_FILES))
  if unknown:
    raise app.UsageError(f'--methods: unknown {unknown}; choose from {sorted(GIN_FILES)}')
  root = os.path.abspath(FLAGS.root_dir)
  os.makedirs(root, exist_ok=True)

  print(f'== 1/5 Data: {FLAGS.data_steps} steps of {GAME}, half the episodes scripted, '
        'half random', flush=True)
  replay_dir, _ = experiments.scripted_mixture(root, GAME, FLAGS.data_steps,
                                               max_episode_frames=FLAGS.max_episode_frames)
  behaviour, steps = experiments.data_returns(replay_dir)
  print(f'Data: {steps} steps, {len(behaviour)} finished episodes, average return '
        f'{np.mean(behaviour):.2f}', flush=True)

  print(f'\n== 2/5 Random play: {FLAGS.random_episodes} episodes with the evaluation '
        'protocol', flush=True)
  from tf_offline_q.eval import normalization  # pylint: disable=g-import-not-at-top
  scores_path = os.path.join(root, 'reference_scores.json')
  t = time.time()
  random = experiments.random_returns(GAME, FLAGS.random_episodes, FLAGS.max_episode_frames)
  normalization.write_reference_scores(scores_path, {GAME: normalization.ReferenceScores(
      random=float(np.mean(random)), dqn_replay=float(np.mean(behaviour)))})
  print(f'Random play: mean return {np.mean(random):.2f} ({time.time() - t:.0f}s). Normalised '
        f'scores: random 0, dataset average 1.0 ({scores_path})', flush=True)

  print(f'\n== 3/5 Training {", ".join(FLAGS.methods)} for {FLAGS.train_steps} updates each, '
        'side by side', flush=True)
  runs = {m: os.path.join(root, 'runs', m) for m in FLAGS.methods}
  jobs = [(m, train_command(runs[m], replay_dir, m), os.path.join(runs[m], 'train.log'))
          for m in FLAGS.methods]
  failed = experiments.run_scripts(jobs, parallel=2)
  if failed:
    sys.exit(f'demo: training failed: {failed} (logs: RUN/train.log)')

  print('\n== 4/5 Report', flush=True)
  report_dir = os.path.join(root, 'report')
  experiments.run_script('launch/report.py', f'--runs={os.path.join(root, "runs", "*")}',
                         f'--output_dir={report_dir}', '--reps=1000',
                         f'--reference_scores={scores_path}')

  print('\n== 5/5 The exported SavedModels, replayed by launch/evaluate.py', flush=True)
  rows = []
  for method, run_dir in runs.items():
    final = experiments.eval_records(run_dir)[-1]
    output = os.path.join(run_dir, 'saved_policy_eval.json')
    experiments.run_script(
        'launch/evaluate.py', f'--policy_dir={os.path.join(run_dir, "policies", "greedy_policy")}',
        f'--games={GAME}', f'--num_steps={FLAGS.eval_steps}',
        f'--max_episodes={FLAGS.eval_max_episodes}',
        f'--max_episode_frames={FLAGS.max_episode_frames}', f'--output={output}',
        f'--seed={FLAGS.seed + 1000}')
    with open(output, encoding='utf-8') as f:
      saved = json.load(f)
    rows.append((method, final, saved))

  with open(os.path.join(report_dir, 'report.md'), encoding='utf-8') as f:
    print('\n' + f.read())
  print(f'Mean return on {GAME} (sticky actions 0.25, epsilon 0.001):')
  print(f'  {"random play":24s} {_mean_sem(random)}')
  print(f'  {"dataset average":24s} {_mean_sem(behaviour)}')
  for method, final, saved in rows:
    print(f'  {method + " in training":24s} {_mean_sem(final["returns"])} at step {final["step"]}')
    print(f'  {method + " SavedModel":24s} {_mean_sem(saved["results"][GAME]["returns"])} '
          f'(evaluate.py; policy train step {saved["train_step"]})')
  print(f'\nDemo finished in {(time.time() - start) / 60:.1f} min.')
  print(f'  data:        {replay_dir}')
  for method, run_dir in runs.items():
    print(f'  {method + ":":12s} {run_dir}  (policies/greedy_policy, eval/returns.jsonl, train.log)')
  print(f'  report:      {os.path.join(report_dir, "report.md")} and the PNG plots beside it')
  print(f'  TensorBoard: tensorboard --logdir {os.path.join(root, "runs")}')


if __name__ == '__main__':
  app.run(main)
