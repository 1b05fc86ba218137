r"""`make demo`: the paper's pipeline end to end, CPU-sized, in about ten minutes.

1. generates a small real-ALE DQN-Replay sample (Dopamine checkpoint files);
2. trains a micro ViT-ts CQL agent and a micro ViT-ts BC agent on it, through
   Reverb, with TensorBoard summaries, checkpoints and policy SavedModels;
3. evaluates both with sticky actions and epsilon 0.001 during training;
4. writes a report (DQN-normalised IQM with bootstrap CIs, plots).

Every step is one of the launch scripts, run as a user would run it; the
commands are printed as they start.

  python launch/demo.py --root_dir=runs/demo [--game=Breakout] [--train_steps=1500]
"""
import os
import shlex
import subprocess
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string('root_dir', 'runs/demo', 'Where data, runs and the report go.')
flags.DEFINE_string('game', 'Breakout', 'ALE game.')
flags.DEFINE_integer('data_steps', 6000, 'Agent steps of generated data.')
flags.DEFINE_integer('train_steps', 1500, 'Gradient updates per agent.')
flags.DEFINE_integer('eval_interval', 500, 'Updates between evaluations.')
flags.DEFINE_integer('eval_steps', 1000, 'Agent steps per evaluation (paper: 125K).')
FLAGS = flags.FLAGS


def run(*command):
  print('\n$ ' + ' '.join(shlex.quote(c) for c in command), flush=True)
  start = time.time()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2'))
  proc = subprocess.run([sys.executable, *command], cwd=REPO, env=env)
  if proc.returncode:
    sys.exit(f'demo: step failed (exit {proc.returncode}): {command[0]}')
  print(f'  ({time.time() - start:.0f}s)', flush=True)


def main(argv):
  del argv
  start = time.time()
  root = os.path.abspath(FLAGS.root_dir)
  data_root = os.path.join(root, 'data')
  replay_dir = os.path.join(data_root, FLAGS.game, '1', 'replay_logs')
  if not os.path.isdir(replay_dir):
    run('launch/generate_dqn_replay.py', f'--root_dir={data_root}', f'--game={FLAGS.game}',
        f'--num_steps={FLAGS.data_steps}', '--nofull_action_space', '--policy=random')
  common = ['--gin_file=local.gin',
            f"--gin_bindings=train_eval.game='{FLAGS.game}'",
            f"--gin_bindings=train_eval.data_source='dopamine:{replay_dir}'",
            f'--gin_bindings=train_eval.num_train_steps={FLAGS.train_steps}',
            f'--gin_bindings=train_eval.eval_interval={FLAGS.eval_interval}',
            f'--gin_bindings=train_eval.eval_steps={FLAGS.eval_steps}',
            '--gin_bindings=train_eval.max_episode_frames=8000',
            f'--gin_bindings=train_eval.policy_save_interval={FLAGS.train_steps}']
  runs = {'cql_vit_ts': 'vit_ts_none.gin', 'bc_vit_ts': 'bc_vit_ts.gin'}
  for name, gin_file in runs.items():
    run('launch/train.py', f'--root_dir={os.path.join(root, "runs", name)}',
        f'--gin_file={gin_file}', *common, f"--gin_bindings=train_eval.method='{name}'")
  report_dir = os.path.join(root, 'report')
  run('launch/report.py', f'--runs={os.path.join(root, "runs", "*")}',
      f'--output_dir={report_dir}', '--reps=1000')
  print(f'\nDemo finished in {(time.time() - start) / 60:.1f} min.')
  print(f'  data:         {replay_dir}')
  for name in runs:
    run_dir = os.path.join(root, 'runs', name)
    print(f'  {name + ":":13s} {run_dir}  (policies/greedy_policy, eval/returns.jsonl)')
  print(f'  report:       {os.path.join(report_dir, "report.md")} and PNG plots beside it')
  print(f'  TensorBoard:  tensorboard --logdir {os.path.join(root, "runs")}')


if __name__ == '__main__':
  app.run(main)
