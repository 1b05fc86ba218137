r"""Trains an agent offline on DQN-Replay data and evaluates it on ALE.

  python launch/train.py --root_dir=runs/pong_vit_ts \
      --gin_file=vit_ts_none.gin --gin_file=local.gin \
      --gin_bindings="train_eval.game='Pong'" \
      --gin_bindings="train_eval.data_source='dopamine:/data/Pong/1/replay_logs'"

Flags: --root_dir, --gin_file (repeatable; names are looked up in gin/ too),
--gin_bindings (repeatable), TF-Agents' --tpu / --use_gpu, --cpu_replicas (a
MirroredStrategy over N logical CPUs, for tests). Multi-worker runs
take their cluster from TF_CONFIG. Everything else is gin (`train_eval`,
`CqlC51Agent`, `BehavioralCloningAgent`). Running the same command again
resumes from the newest intact checkpoint in --root_dir. One process at a time
owns a --root_dir (RUN/run.lock); the settings that shape the run are recorded
in RUN/run_config.json and a resume that changes one fails, listing them
(budgets and intervals may change); see tf_offline_q/train/run_dir.py. The
trained policies are RUN/policies/greedy_policy and collect_policy, SavedModels
of the latest exported step (tf_offline_q/train/export.py).
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
import gin
from tf_agents.train.utils import strategy_utils  # Defines --tpu and --use_gpu.

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from tf_offline_q import cli  # pylint: disable=g-import-not-at-top
from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
from tf_offline_q.train import train_eval as train_eval_lib  # pylint: disable=g-import-not-at-top

GIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'gin')

flags.DEFINE_string('root_dir', None, 'Run directory (checkpoints, summaries, evaluations).')
flags.DEFINE_multi_string('gin_file', [], 'Gin files; bare names are looked up in gin/.')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings, e.g. "train_eval.game=\'Pong\'".')
flags.DEFINE_integer('cpu_replicas', 0,
                     'MirroredStrategy over this many logical CPU devices (> 1): runs the '
                     'data-parallel path on a CPU-only machine (tests); not faster.')
flags.mark_flag_as_required('root_dir')
FLAGS = flags.FLAGS


def parse_gin(gin_files, gin_bindings):
  """Parses gin files (also looked up in gin/) and bindings; errors name the culprit."""
  gin.add_config_file_search_path(GIN_DIR)
  files = []
  for name in gin_files:
    path = name if os.path.exists(name) else os.path.join(GIN_DIR, name)
    if not os.path.exists(path):
      raise FileNotFoundError(f'gin file {name!r} not found (nor in {os.path.normpath(GIN_DIR)})')
    files.append(path)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)  # gin logs an error for every include it looks up
  try:
    gin.parse_config_files_and_bindings(files, gin_bindings)
  finally:
    logging.set_verbosity(verbosity)


def main(argv):
  del argv
  # TF-Agents' INFO and SavedModel WARNING lines would drown the progress lines.
  console.quiet_third_party()
  with cli.user_errors('train.py'):
    parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    strategy = strategy_lib.make_strategy(FLAGS.tpu, FLAGS.use_gpu, FLAGS.cpu_replicas)
    train_eval_lib.train_eval(FLAGS.root_dir, strategy=strategy)


if __name__ == '__main__':
  app.run(main)
