"""A MinAtar game through the whole pipeline: generator -> Dopamine files -> Reverb -> train -> eval."""
import os
import subprocess
import sys

import gin
import numpy as np

from tests.train import conftest
from tf_offline_q.data import dqn_replay
from tf_offline_q.envs import minatar
from tf_offline_q.eval import evaluation
from tf_offline_q.train import train_eval


def test_minatar_breakout_generate_train_evaluate(tmp_path):
  data_root = str(tmp_path / 'data')
  subprocess.run([sys.executable, os.path.join(conftest.REPO, 'launch', 'generate_dqn_replay.py'),
                  f'--root_dir={data_root}', '--game=minatar:breakout', '--num_steps=600',
                  '--nofull_action_space', '--noclip_rewards', '--seed=1'],
                 check=True, capture_output=True, env=conftest.env(), timeout=300)
  replay_dir = os.path.join(data_root, 'MinAtar-Breakout', '1', 'replay_logs')
  episodes = list(dqn_replay.iterate_episodes(replay_dir))
  assert sum(len(e) for e in episodes) == 600
  # The stored frames are MinAtar grids drawn at 84x84: the border is black
  # and every frame shows the paddle (grey 63) in the bottom row of cells.
  frames = np.concatenate([e.observation for e in episodes])
  assert frames.shape[1:] == (84, 84)
  assert not frames[:, :7].any() and not frames[:, :, -7:].any()
  paddle = minatar.grey_levels(4)[0]
  assert (minatar.read_cells(frames)[:, 9] == paddle).any(axis=1).all()
  assert set(np.concatenate([e.action for e in episodes])) <= {0, 1, 2}

  gin.clear_config()
  root = str(tmp_path / 'run')
  gin.parse_config([
      "train_eval.game = 'MinAtar-Breakout'", "train_eval.agent_type = 'bc'",
      "train_eval.backbone = 'vit'", "train_eval.variant = 'micro'",
      'train_eval.batch_size = 8', 'train_eval.num_train_steps = 20',
      'train_eval.steps_per_run = 10', 'train_eval.eval_interval = 20',
      'train_eval.eval_steps = 60', 'train_eval.max_episode_frames = 40',
      'train_eval.policy_save_interval = 0', 'train_eval.fraction = 1.0',
      f"train_eval.data_source = 'dopamine:{replay_dir}'"])
  try:
    records = train_eval.train_eval(root)
  finally:
    gin.clear_config()
  assert [r['step'] for r in records] == [20]
  record = evaluation.read_eval_records(root)[0]
  assert record['game'] == 'MinAtar-Breakout'
  assert sum(record['lengths']) >= 60 and max(record['lengths']) <= 40   # the step cap
  assert record['normalized'] is None          # no Table 3 row; report.py takes a file
