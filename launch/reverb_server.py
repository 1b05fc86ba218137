r"""Runs a Reverb replay server with one table per game, filled from data.

Learners connect by address (`tf_offline_q.data.make_dataset(address, games,
...)`) and wait until the tables are filled. Several servers (one per game,
or shards of a game with `--num_shards`/`--shard_index`) can feed one learner.

With `--checkpoint_dir`, the server checkpoints its tables after filling
them; a server restarted on the same directory restores them from the latest
checkpoint and does not read the source files again.

Sources (one of):
  --dopamine_root=ROOT  Dopamine files ROOT/{GAME}/{RUN}/replay_logs
  --tfds_data_dir=DIR   a prepared TFDS dataset per game, named by
                        --tfds_name (default dqn_replay_atari/{game}_run_{run};
                        rlu_atari/{game}_run_{run} for TFDS's own)

Example:
  python launch/reverb_server.py --games=Pong,Breakout \
      --dopamine_root=/data/dqn_replay --fraction=0.05 --seed=0 \
      --port=8000 --checkpoint_dir=/data/reverb_ckpt
"""
import os
import socket
import sys
import time

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import cli  # pylint: disable=g-import-not-at-top
from tf_offline_q import files  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import action_sets  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import dqn_replay  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import reverb_stream  # pylint: disable=g-import-not-at-top

flags.DEFINE_list('games', ['Pong'], 'Games; one table each.')
flags.DEFINE_string('dopamine_root', None, 'Root of Dopamine directories.')
flags.DEFINE_integer('run', 1, 'Run number of the data.')
flags.DEFINE_list('checkpoints', None,
                  'Dopamine checkpoint numbers to load (default: all).')
flags.DEFINE_string('tfds_data_dir', None, 'TFDS data directory.')
flags.DEFINE_string('tfds_name', 'dqn_replay_atari/{game}_run_{run}',
                    'TFDS dataset name template ({game}, {run}).')
flags.DEFINE_float('fraction', 0.05, 'Share of the data loaded, in (0, 1].')
flags.DEFINE_enum('mode', 'uniform', list(dqn_replay.SUBSET_MODES),
                  'uniform: random episodes (seeded); first: first fraction '
                  'of every checkpoint.')
flags.DEFINE_integer('seed', 0, 'Seed of the uniform subset.')
flags.DEFINE_integer('shard_index', 0, 'This server\'s shard of the subset.')
flags.DEFINE_integer('num_shards', 1, 'Servers sharing each game.')
flags.DEFINE_bool('full_action_space', False,
                  'The learners play the full action set (18 ALE / 6 MinAtar actions, as '
                  'multi-game runs): minimal-set data (DQN-Replay) is mapped to it '
                  '(tf_offline_q/data/action_sets.py).')
flags.DEFINE_enum('data_action_set', None, ['minimal', 'full'],
                  'The set the data\'s actions index (default: what the data records, else '
                  'DQN-Replay\'s minimal set for ALE games).')
flags.DEFINE_integer('stack_size', 4, 'Frames per stacked state.')
flags.DEFINE_integer('n_step', 3, 'n of the n-step transitions.')
flags.DEFINE_integer('port', None, 'gRPC port (default: a free one).')
flags.DEFINE_string('checkpoint_dir', None,
                    'Reverb checkpoints: restored at start, written after '
                    'filling.')
flags.DEFINE_string('address_file', None,
                    'Write "HOST:PORT" here once the tables are ready.')
flags.DEFINE_string('advertise_host', 'localhost',
                    'Host name learners use to reach this server (in the '
                    'address file and the log); e.g. this machine\'s name.')


def make_source(game, f):
  if bool(f.dopamine_root) == bool(f.tfds_data_dir):
    raise app.UsageError('give exactly one of --dopamine_root, --tfds_data_dir')
  if f.dopamine_root:
    checkpoints = (tuple(int(c) for c in f.checkpoints)
                   if f.checkpoints else None)
    return reverb_stream.DopamineSource(
        dqn_replay.dopamine_replay_dir(f.dopamine_root, game, f.run),
        checkpoints)
  return reverb_stream.TfdsSource(
      f.tfds_data_dir, f.tfds_name.format(game=game, run=f.run))


def main(argv):
  del argv
  console.quiet_third_party()
  with cli.user_errors('reverb_server.py'):
    server = start_and_fill(flags.FLAGS)
  try:
    server.wait()
  except KeyboardInterrupt:
    pass
  finally:
    server.stop()


def start_and_fill(f):
  """Starts the server, restores or fills its tables, announces its address."""
  games = [dqn_replay.canonical_game(g) for g in f.games]
  server = reverb_stream.ReplayServer(
      games, stack_size=f.stack_size, n_step=f.n_step, port=f.port,
      checkpoint_dir=f.checkpoint_dir)
  try:
    filled = False
    for game in games:
      if server.is_filled(game):
        print(f'{game}: restored {server.num_items(game)} items from '
              f'{f.checkpoint_dir}', flush=True)
        continue
      source = make_source(game, f)
      action_map = action_sets.action_map(game, source, f.full_action_space,
                                          f.data_action_set)
      stats = server.fill_from(game, source, fraction=f.fraction, mode=f.mode,
                               seed=f.seed, shard_index=f.shard_index,
                               num_shards=f.num_shards, action_map=action_map)
      filled = True
      print(f'{game}: {stats.episodes} episodes, {stats.steps} steps, '
            f'{stats.items} items in {stats.seconds:.1f}s '
            f'({stats.steps_per_second:.0f} steps/s)', flush=True)
    if filled and f.checkpoint_dir:
      start = time.time()
      path = server.checkpoint()
      print(f'Checkpoint {path} ({time.time() - start:.1f}s)', flush=True)
  except BaseException:
    server.stop()
    raise
  address = f'{f.advertise_host}:{server.port}'
  if f.address_file:
    files.atomic_write_text(f.address_file, address)
  print(f'Serving {games} at {address} (this machine: {socket.gethostname()}'
        f':{server.port})', flush=True)
  logging.info('Serving %s at %s', games, address)
  return server


if __name__ == '__main__':
  app.run(main)
