"""Fixtures of tests/train: a real-ALE Pong sample, a MinAtar-Breakout sample, and a runner
for launch/train.py."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A micro ViT-ts CQL run small enough for a test.
TINY = ['--gin_file=vit_ts_none.gin', '--gin_file=local.gin',
        "--gin_bindings=train_eval.batch_size=8",
        "--gin_bindings=train_eval.steps_per_run=20",
        "--gin_bindings=train_eval.eval_interval=0",
        "--gin_bindings=train_eval.policy_save_interval=0",
        "--gin_bindings=train_eval.summary_interval=10"]


def train_command(root_dir, replay_dir, *bindings):
  return [sys.executable, os.path.join(REPO, 'launch', 'train.py'), f'--root_dir={root_dir}',
          *TINY, f"--gin_bindings=train_eval.data_source='dopamine:{replay_dir}'",
          *(f'--gin_bindings={b}' for b in bindings)]


def env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')


@pytest.fixture(scope='session')
def pong_replay(tmp_path_factory):
  """1,500 steps of real Pong (random policy, minimal action set) as Dopamine files."""
  root = str(tmp_path_factory.mktemp('pong'))
  subprocess.run([sys.executable, os.path.join(REPO, 'launch', 'generate_dqn_replay.py'),
                  f'--root_dir={root}', '--game=Pong', '--num_steps=1500',
                  '--full_action_space=false', '--seed=3'],
                 check=True, capture_output=True, env=env(), timeout=300)
  return os.path.join(root, 'Pong', '1', 'replay_logs')


@pytest.fixture(scope='session')
def minatar_replay(tmp_path_factory):
  """600 steps of MinAtar Breakout (random policy, minimal action set) as Dopamine files."""
  root = str(tmp_path_factory.mktemp('minatar'))
  subprocess.run([sys.executable, os.path.join(REPO, 'launch', 'generate_dqn_replay.py'),
                  f'--root_dir={root}', '--game=minatar:breakout', '--num_steps=600',
                  '--nofull_action_space', '--noclip_rewards', '--seed=1'],
                 check=True, capture_output=True, env=env(), timeout=300)
  return os.path.join(root, 'MinAtar-Breakout', '1', 'replay_logs')
