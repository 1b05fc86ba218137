r"""Converts Dopamine DQN-Replay files into a local TFDS RLDS dataset.

Output: `{data_dir}/dqn_replay_atari/{Game}_run_{run}/1.0.0/`, with exactly
the features of TFDS's `rlu_atari` (one split per Dopamine checkpoint,
`checkpoint_00`, ...), so training reads one format whatever the user holds.
The dataset is built in a temporary directory and renamed into place when
complete: an interrupted conversion leaves no half dataset behind.

Example:
  python launch/convert_dqn_replay.py --dopamine_root=/data/dqn_replay \
      --game=Pong --run=1 --data_dir=/data/tfds
  # or --replay_dir=/data/dqn_replay/Pong/1/replay_logs --game=Pong
"""
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import cli  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import dqn_replay  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import rlds  # pylint: disable=g-import-not-at-top

flags.DEFINE_string('dopamine_root', None,
                    'Root of {GAME}/{RUN}/replay_logs directories.')
flags.DEFINE_string('replay_dir', None,
                    'A replay_logs directory (instead of --dopamine_root).')
flags.DEFINE_string('game', None, 'ALE game name, e.g. Pong.')
flags.DEFINE_integer('run', 1, 'Run number.')
flags.DEFINE_string('data_dir', None, 'TFDS data directory to write.')
flags.DEFINE_list('checkpoints', None,
                  'Dopamine checkpoint numbers to convert (default: all).')
flags.DEFINE_bool('overwrite', False, 'Replace an existing dataset.')


def main(argv):
  del argv
  console.quiet_third_party()
  f = flags.FLAGS
  if not f.game or not f.data_dir:
    raise app.UsageError('--game and --data_dir are required')
  if bool(f.dopamine_root) == bool(f.replay_dir):
    raise app.UsageError('give exactly one of --dopamine_root, --replay_dir')
  with cli.user_errors('convert_dqn_replay.py'):
    replay_dir = f.replay_dir or dqn_replay.dopamine_replay_dir(
        f.dopamine_root, f.game, f.run)
    checkpoints = [int(c) for c in f.checkpoints] if f.checkpoints else None
    start = time.time()
    path = rlds.convert(replay_dir, f.data_dir, f.game, f.run, checkpoints,
                        overwrite=f.overwrite)
    builder = rlds.load_builder(
        f.data_dir, f'{rlds.DATASET_NAME}/{rlds.config_name(f.game, f.run)}')
  episodes = sum(s.num_examples for s in builder.info.splits.values())
  print(f'Converted {replay_dir} -> {path}: {len(builder.info.splits)} '
        f'splits, {episodes} episodes ({time.time() - start:.1f}s). Read it '
        f'with name="{rlds.DATASET_NAME}/{rlds.config_name(f.game, f.run)}".')


if __name__ == '__main__':
  app.run(main)
