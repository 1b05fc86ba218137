"""DQN-Replay data: Dopamine files and TFDS RLDS episodes, streamed via Reverb.

  dqn_replay     Dopamine checkpoint files: lazy reading, validation, episodes,
                 subsets; `DopamineReplayWriter` writes such files.
  replay_writer  `ReplayDirWriter`: one run's checkpoints appended to a dataset
                 directory with a manifest, so runs are never mixed.
  rlds           TFDS RLDS episodes with rlu_atari's features: our builder
                 (`DqnReplayAtari`) and reading rlu_atari-like datasets.
                 Imported on demand (`from tf_offline_q.data import rlds`), as
                 it pulls in tensorflow_datasets.
  reverb_stream  Reverb tables (one per game), `ReplayServer`, and the
                 `make_dataset` / `make_distributed_dataset` learners read.

Both sources become `dqn_replay.Episode`s and go through the same writer.
"""
from tf_offline_q.data.dqn_replay import DataError
from tf_offline_q.data.dqn_replay import Episode
from tf_offline_q.data.reverb_stream import DopamineSource
from tf_offline_q.data.reverb_stream import FillStats
from tf_offline_q.data.reverb_stream import ReplayServer
from tf_offline_q.data.reverb_stream import TfdsSource
from tf_offline_q.data.reverb_stream import iterate_source
from tf_offline_q.data.reverb_stream import make_dataset
from tf_offline_q.data.reverb_stream import make_distributed_dataset
from tf_offline_q.data.reverb_stream import parse_source

__all__ = [
    'DataError', 'DopamineSource', 'Episode', 'FillStats', 'ReplayServer',
    'TfdsSource', 'iterate_source', 'make_dataset', 'make_distributed_dataset',
    'parse_source',
]
