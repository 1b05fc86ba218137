"""Streams DQN-Replay episodes through Reverb tables into TF-Agents batches.

Storage. One table per game. Every step of every episode is appended once to
a Reverb `TrajectoryWriter`, as three columns:

  frame      uint8   [H, W]  the step's newest frame
  step_info  int32   [3]     step_type (FIRST / MID / LAST, LAST = a cut
                             episode's end), next_step_type, action
  reward_discount float32 [2]  raw reward; discount, 0 if the step's
                             transition ended the game

Items are overlapping windows of `stack_size + n_step` consecutive steps (the
`stack_size - 1` steps before a transition's first state, then its `n_step +
1` states); they only reference the chunks holding those steps, so a frame is
stored once however many items and stacks use it (`frame`, `step_info`: the
whole window; `reward_discount`: the last `n_step + 1` steps). One item is
created per step that Dopamine could sample (not in `invalid_range`, its stack
available, and `n_step` steps after it unless a terminal comes first).

Sampling. After sampling, in the tf.data graph, `items_to_trajectory` stacks
the frames (oldest first) and zeroes the frames that belong to an earlier
episode than the stacked step, which is Dopamine's zero padding at episode
starts. A window may run past the end of a terminal episode into the next
episode written: those steps come after a 0 discount and do not count.

Output: TF-Agents `Trajectory` batches, every step as
`tf_offline_q.specs.trajectory_spec()`: observation uint8 `[B, n+1, H, W, K]`,
action int64, reward float32 (raw, per step), discount float32, step_type and
next_step_type int32, all `[B, n+1]`. Step `t` of an item starting at
Dopamine index `i` is index `i + t`.

Servers. `ReplayServer` runs an in-process Reverb server (or, with
`launch/reverb_server.py`, a separate process; learners connect by address),
fills tables from a Dopamine directory or a TFDS data_dir, and checkpoints
them: a server restarted on the same `checkpoint_dir` has its tables back
without reading the source files. A small `{table}.ready` table per game
records that a fill completed; learners wait for it. A damaged table
checkpoint (`start_server`) is set aside with a warning naming the file, and
the tables start empty, to be refilled from their source.

Time-outs. Reverb's sampler retries a lost server forever; with
`timeout_seconds`, `make_dataset` waits that long for a server that does not
answer (saying which one on stderr), then raises, and while sampling a
`ServerWatchdog` ends the process with an error naming the server once it has
not answered for that long.

Learners. `make_dataset` builds one replica's `tf.data.Dataset` from any
number of (server, table) sources, interleaved; `make_distributed_dataset`
builds a per-replica `tf.distribute.DistributedDataset` with
`distribute_datasets_from_function`. The Reverb dataset op is placed on the
host CPU (it has no TPU/GPU kernel).
"""
import collections
import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import reverb
import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from tf_offline_q import files
from tf_offline_q import specs
from tf_offline_q.data import action_sets
from tf_offline_q.data import dqn_replay

Episode = dqn_replay.Episode
DataError = dqn_replay.DataError

FIRST = int(ts.StepType.FIRST)
MID = int(ts.StepType.MID)
LAST = int(ts.StepType.LAST)

READY_SUFFIX = '.ready'
_COLUMNS = ('frame', 'step_info', 'reward_discount')
DEFAULT_MAX_SIZE = 100_000_000
# Steps between writer flushes; bounds pending items and client memory.
_FLUSH_EVERY = 16


# ------------------------------------------------------------------- layout
def window_length(stack_size: int, n_step: int) -> int:
  """Steps per item: `stack_size - 1` history steps + `n_step + 1` states."""
  return stack_size + n_step


def item_signature(stack_size: int = specs.STACK_SIZE,
                   n_step: int = 3,
                   frame_shape: Sequence[int] = specs.FRAME_SHAPE
                   ) -> Dict[str, tf.TensorSpec]:
  """Signature of one table item (W = stack_size + n_step, N = n_step + 1).

  Returns:
    {'frame': uint8 [W, H, W'], 'step_info': int32 [W, 3] (step_type,
     next_step_type, action), 'reward_discount': float32 [N, 2]}.
  """
  _check_layout(stack_size, n_step)
  w = window_length(stack_size, n_step)
  n = n_step + 1
  return {
      'frame': tf.TensorSpec([w] + list(frame_shape), tf.uint8, 'frame'),
      'step_info': tf.TensorSpec([w, 3], tf.int32, 'step_info'),
      'reward_discount': tf.TensorSpec([n, 2], tf.float32, 'reward_discount'),
  }


def _check_layout(stack_size, n_step):
  if stack_size < 1:
    raise ValueError(f'stack_size must be >= 1, got {stack_size}')
  if n_step < 1:
    raise ValueError(f'n_step must be >= 1, got {n_step}')


def ready_table_name(table: str) -> str:
  return table + READY_SUFFIX


_READY_SIGNATURE = {
    'num_items': tf.TensorSpec([], tf.int64, 'num_items'),
    'num_steps': tf.TensorSpec([], tf.int64, 'num_steps'),
}


def make_tables(name: str,
                stack_size: int = specs.STACK_SIZE,
                n_step: int = 3,
                frame_shape: Sequence[int] = specs.FRAME_SHAPE,
                max_size: int = DEFAULT_MAX_SIZE,
                min_size_to_sample: int = 1,
                signature: Optional[Dict[str, tf.TensorSpec]] = None
                ) -> List[reverb.Table]:
  """The data table of one game (uniform sampler, MinSize rate limiter,
  signature) and its one-item `.ready` table. `signature` replaces the
  Atari layout's (tables of other layouts, e.g. `reverb_windows`)."""
  data = reverb.Table(
      name=name,
      sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(),
      max_size=int(max_size),
      rate_limiter=reverb.rate_limiters.MinSize(int(min_size_to_sample)),
      signature=signature or item_signature(stack_size, n_step, frame_shape))
  ready = reverb.Table(
      name=ready_table_name(name),
      sampler=reverb.selectors.Fifo(),
      remover=reverb.selectors.Fifo(),
      max_size=1,
      rate_limiter=reverb.rate_limiters.MinSize(1),
      signature=_READY_SIGNATURE)
  return [data, ready]


def mark_ready(client: reverb.Client, table: str, stats: 'FillStats'):
  """Writes the one item of `table`'s `.ready` table: its fill completed."""
  with client.trajectory_writer(num_keep_alive_refs=1) as w:
    w.append({'num_items': np.int64(stats.items),
              'num_steps': np.int64(stats.steps)})
    w.create_item(ready_table_name(table), 1.0,
                  {'num_items': w.history['num_items'][-1],
                   'num_steps': w.history['num_steps'][-1]})
    w.flush()


# ------------------------------------------------------------------- writing
def step_types(length: int, terminal: bool) -> Tuple[np.ndarray, np.ndarray]:
  """(step_type, next_step_type), int32 `[length]`, of an episode.

  FIRST on the first step; LAST on the last step of a cut (non-terminal)
  episode, which only serves as a next state; MID otherwise. next_step_type
  is the next step's type, LAST after a terminal step and FIRST after a cut
  episode's last step (a TF-Agents boundary).
  """
  st = np.full(length, MID, dtype=np.int32)
  if not terminal and length > 1:
    st[-1] = LAST
  st[0] = FIRST
  nst = np.empty(length, dtype=np.int32)
  nst[:-1] = st[1:]
  nst[-1] = LAST if terminal else FIRST
  return st, nst


def item_starts(episode: Episode, n_step: int) -> np.ndarray:
  """Steps of `episode` that start an item (Dopamine's valid indices).

  A step may start an n-step transition if it is `sampleable` and either the
  episode is terminal (the return stops at the terminal) or `n_step` more
  steps follow it (for the next state). Like Dopamine, nothing starts in the
  last `n_step` steps before a buffer's cursor (`Episode.at_cursor`).
  """
  length = len(episode)
  ok = episode.sampleable_mask().copy()
  if not episode.terminal or episode.at_cursor:
    ok[max(length - n_step, 0):] = False
  return np.flatnonzero(ok)


@dataclasses.dataclass
class FillStats:
  """What a fill wrote: episodes, steps (frames), items, seconds."""
  episodes: int = 0
  steps: int = 0
  items: int = 0
  seconds: float = 0.0

  @property
  def steps_per_second(self) -> float:
    return self.steps / self.seconds if self.seconds > 0 else float('nan')


class EpisodeWriter:
  """Appends episodes' steps to a table, one item per sampleable step.

  Frames are appended once; items reference the last `stack_size + n_step`
  steps of the writer's history, which runs on across episodes (the graph
  masks frames of other episodes). `close()` must be called to write the
  items of the last steps and flush.
  """

  def __init__(self,
               client: reverb.Client,
               table: str,
               stack_size: int = specs.STACK_SIZE,
               n_step: int = 3,
               frame_shape: Sequence[int] = specs.FRAME_SHAPE,
               chunk_length: Optional[int] = None):
    """Args:
      client: a `reverb.Client`.
      table: data table name.
      stack_size, n_step: the table's layout (see `item_signature`).
      frame_shape: `[H, W]` of a frame.
      chunk_length: steps per Reverb chunk (compression unit, and what a
        sample transfers); default `stack_size + n_step`.
    """
    _check_layout(stack_size, n_step)
    self._table = table
    self._k = stack_size
    self._n = n_step
    self._w = window_length(stack_size, n_step)
    self._frame_shape = tuple(frame_shape)
    chunk = int(chunk_length or self._w)
    if chunk < 1:
      raise ValueError(f'chunk_length must be >= 1, got {chunk_length}')
    keep = max(chunk, self._w)
    self._writer = client.trajectory_writer(num_keep_alive_refs=keep)
    for column in _COLUMNS:
      self._writer.configure((column,), num_keep_alive_refs=keep,
                             max_chunk_length=chunk)
    self._history = None  # the writer's column histories, once they exist
    self._pending = collections.deque()  # global steps that start an item
    self._num_steps = 0  # appended, fillers included
    self._closed = False
    self.stats = FillStats()
    self._zero_frame = np.zeros(self._frame_shape, np.uint8)
    for _ in range(self._k - 1):
      self._append_filler()

  def _append(self, frame, step_info, reward_discount):
    self._writer.append({'frame': frame, 'step_info': step_info,
                         'reward_discount': reward_discount})
    if self._history is None:
      self._history = self._writer.history
    g = self._num_steps
    self._num_steps += 1
    while self._pending and self._pending[0] + self._n == g:
      self._pending.popleft()
      self._create_item()
    if self._num_steps % _FLUSH_EVERY == 0:
      self._writer.flush(block_until_num_items=2 * _FLUSH_EVERY)

  def _create_item(self):
    h = self._history
    self._writer.create_item(
        self._table, priority=1.0, trajectory={
            'frame': h['frame'][-self._w:],
            'step_info': h['step_info'][-self._w:],
            'reward_discount': h['reward_discount'][-(self._n + 1):],
        })
    self.stats.items += 1

  def _append_filler(self):
    self._append(self._zero_frame, np.array([FIRST, FIRST, 0], np.int32),
                 np.array([0.0, 1.0], np.float32))

  def write(self, episode: Episode) -> int:
    """Appends one episode; returns the number of items it will have."""
    if self._closed:
      raise RuntimeError('EpisodeWriter is closed')
    length = len(episode)
    if length == 0:
      return 0
    if episode.observation.shape[1:] != self._frame_shape:
      raise DataError(
          f'Episode ({episode.checkpoint_id}, {episode.episode_id}): frames '
          f'have shape {episode.observation.shape[1:]}, the table '
          f'{self._table!r} expects {self._frame_shape}')
    st, nst = step_types(length, episode.terminal)
    step_info = np.stack([st, nst, episode.action.astype(np.int32)], axis=1)
    reward_discount = np.stack(
        [episode.reward.astype(np.float32), episode.discount], axis=1)
    starts = item_starts(episode, self._n)
    base = self._num_steps
    self._pending.extend((base + starts).tolist())
    obs = np.ascontiguousarray(episode.observation, dtype=np.uint8)
    for t in range(length):
      self._append(obs[t], step_info[t], reward_discount[t])
    self.stats.episodes += 1
    self.stats.steps += length
    return len(starts)

  def close(self):
    """Writes the items still waiting for later steps, then flushes."""
    if self._closed:
      return
    while self._pending:
      self._append_filler()
    self._writer.flush()
    self._writer.close()
    self._closed = True

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


# ------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class DopamineSource:
  """Dopamine checkpoint files of one game and run.

  Attributes:
    replay_dir: the `{root}/{GAME}/{RUN}/replay_logs` directory (see
      `dqn_replay.dopamine_replay_dir`).
    checkpoints: suffixes to read (None = all complete checkpoints), e.g. to
      shard a game's checkpoints over several servers.
    recorded_stack_size: stack size the files were written with (padding).
  """
  replay_dir: str
  checkpoints: Optional[Tuple[int, ...]] = None
  recorded_stack_size: int = dqn_replay.DEFAULT_STACK_SIZE


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  """A prepared rlu_atari-like TFDS dataset (see `rlds.iterate_episodes`).

  Attributes:
    data_dir: TFDS data directory.
    name: e.g. 'rlu_atari/Pong_run_1' or 'dqn_replay_atari/Pong_run_1'.
    split: '+'-joined splits, None = all.
  """
  data_dir: str
  name: str
  split: Optional[str] = None


Source = Union[DopamineSource, TfdsSource]


def parse_source(spec: str) -> Source:
  """'dopamine:REPLAY_DIR[@0,1,2]' or 'tfds:DATA_DIR:NAME[@SPLIT]'."""
  kind, _, rest = spec.partition(':')
  if kind == 'dopamine' and rest:
    path, _, ckpts = rest.partition('@')
    checkpoints = tuple(int(c) for c in ckpts.split(',')) if ckpts else None
    return DopamineSource(path, checkpoints)
  if kind == 'tfds' and rest:
    data_dir, sep, name = rest.rpartition(':')
    if sep:
      name, _, split = name.partition('@')
      return TfdsSource(data_dir, name, split or None)
  raise ValueError(f'Bad source {spec!r}: expected "dopamine:REPLAY_DIR" or '
                   '"tfds:DATA_DIR:DATASET/CONFIG"')


def iterate_source(source: Source,
                   fraction: float = 0.05,
                   mode: str = 'uniform',
                   seed: int = 0,
                   shard_index: int = 0,
                   num_shards: int = 1,
                   action_map: Optional[action_sets.ActionMap] = None) -> Iterator[Episode]:
  """Episodes of a subset of a source: the one code path for both formats.

  Args:
    source: `DopamineSource` or `TfdsSource`.
    fraction, mode, seed: the subset (see `dqn_replay.read_selection`).
    shard_index, num_shards: keep every `num_shards`-th selected episode,
      from `shard_index` (split one game over several servers).
    action_map: maps the recorded (minimal-set) actions to the full set
      (`action_sets.action_map`); None keeps them as recorded.

  Raises:
    DataError: (with `action_map`) an action outside the minimal set, naming
      the file (Dopamine: its `$store$_action` file) or dataset and episode.
  """
  if not 0 <= shard_index < num_shards:
    raise ValueError(f'shard_index must be in [0, {num_shards}), got '
                     f'{shard_index}')
  if isinstance(source, DopamineSource):
    episodes = dqn_replay.iterate_episodes(
        source.replay_dir, checkpoints=source.checkpoints, fraction=fraction,
        mode=mode, seed=seed, stack_size=source.recorded_stack_size)
  elif isinstance(source, TfdsSource):
    from tf_offline_q.data import rlds  # pylint: disable=g-import-not-at-top
    episodes = rlds.iterate_episodes(source.data_dir, source.name,
                                     split=source.split, fraction=fraction,
                                     mode=mode, seed=seed)
  else:
    raise TypeError(f'Unknown source {source!r}')
  shard = (e for i, e in enumerate(episodes) if i % num_shards == shard_index)
  yield from action_sets.map_actions(shard, action_map, lambda e: episode_location(source, e))


def episode_location(source: Source, episode: Episode) -> str:
  """Where an episode of `source` is stored, for messages."""
  if isinstance(source, DopamineSource):
    path = dqn_replay.checkpoint_filename(source.replay_dir, dqn_replay.STORE_PREFIX + 'action',
                                          episode.checkpoint_id)
    return f'{path} (episode {episode.episode_id})'
  return (f'{os.path.join(source.data_dir, source.name)} (checkpoint_id {episode.checkpoint_id}, '
          f'episode_id {episode.episode_id})')


# ------------------------------------------------------- server checkpoints
# Written into each checkpoint by `write_checkpoint`: its files' sizes.
CHECKPOINT_SIZES_FILE = 'tf_offline_q_sizes.json'
_DONE = 'DONE'
_DAMAGED_DONE = 'DONE.damaged'


def write_checkpoint(client: reverb.Client) -> str:
  """Checkpoints the server's tables (Reverb's `client.checkpoint()`) and
  records its files' sizes in it, so a truncated file is found before Reverb
  reads it; returns the checkpoint's path."""
  path = client.checkpoint()
  if os.path.isdir(path):
    sizes = {f: os.path.getsize(os.path.join(path, f))
             for f in sorted(os.listdir(path))
             if f not in (_DONE, CHECKPOINT_SIZES_FILE)}
    files.atomic_write_text(os.path.join(path, CHECKPOINT_SIZES_FILE),
                            json.dumps(sizes, indent=1) + '\n')
  return path


def _latest_checkpoint(checkpoint_dir: str) -> Optional[str]:
  """The checkpoint Reverb would load: the last by name with a DONE file."""
  if not os.path.isdir(checkpoint_dir):
    return None
  for name in sorted(os.listdir(checkpoint_dir), reverse=True):
    path = os.path.join(checkpoint_dir, name)
    if os.path.exists(os.path.join(path, _DONE)):
      return path
  return None


def _size_problem(checkpoint: str) -> Optional[str]:
  """'FILE: why' if a file differs from the recorded sizes, else None."""
  try:
    with open(os.path.join(checkpoint, CHECKPOINT_SIZES_FILE)) as f:
      sizes = json.load(f)
  except FileNotFoundError:
    return None  # Written without sizes (by Reverb alone).
  except (OSError, ValueError) as e:
    return f'{os.path.join(checkpoint, CHECKPOINT_SIZES_FILE)}: unreadable ({e})'
  for fname, size in sizes.items():
    path = os.path.join(checkpoint, fname)
    if not os.path.exists(path):
      return f'{path}: missing'
    if os.path.getsize(path) != size:
      return (f'{path}: {os.path.getsize(path)} bytes, {size} were written '
              '(truncated?)')
  return None


def _record_problem(checkpoint: str) -> Optional[str]:
  """'FILE: why' for the first tfrecord of `checkpoint` that does not read,
  None if all of them read."""
  for fname in sorted(os.listdir(checkpoint)):
    if not fname.endswith('.tfrecord'):
      continue
    path = os.path.join(checkpoint, fname)
    errors = []
    for compression in ('ZLIB', ''):  # Reverb's, then older checkpoints'.
      try:
        for _ in tf.data.TFRecordDataset(path, compression_type=compression):
          pass
        break
      except tf.errors.OpError as e:
        errors.append(_short(e))
    else:
      return f'{path}: {errors[0]}'
  return None


def _set_aside(checkpoint: str, problem: str):
  """Makes Reverb skip `checkpoint` (its DONE marker renamed), warning."""
  os.replace(os.path.join(checkpoint, _DONE),
             os.path.join(checkpoint, _DAMAGED_DONE))
  _say(f'warning: damaged Reverb checkpoint file {problem}. The checkpoint is '
       f'set aside ({_DAMAGED_DONE}); the tables start from an older intact '
       'checkpoint if there is one, else empty, to be refilled from their '
       'source.')


def start_server(tables: List[reverb.Table], port: Optional[int] = None,
                 checkpoint_dir: Optional[str] = None) -> reverb.Server:
  """A `reverb.Server` restoring its tables from the latest checkpoint in
  `checkpoint_dir`, if any. A damaged checkpoint (a file of another size than
  `write_checkpoint` recorded, or one Reverb cannot read) is set aside with a
  warning naming the file; the tables then come from an older intact
  checkpoint, or start empty (their `.ready` tables too, so they get refilled).
  """
  if not checkpoint_dir:
    return reverb.Server(tables, port=port)
  for _ in range(100):  # At most one try per damaged checkpoint.
    latest = _latest_checkpoint(checkpoint_dir)
    problem = latest and _size_problem(latest)
    if problem:
      _set_aside(latest, problem)
      continue
    checkpointer = reverb.checkpointers.DefaultCheckpointer(path=checkpoint_dir)
    try:
      return reverb.Server(tables, port=port, checkpointer=checkpointer)
    except (RuntimeError, ValueError, tf.errors.OpError) as e:
      problem = latest and _record_problem(latest)
      if not problem:  # Not the checkpoint (e.g. the port is taken).
        raise
      _set_aside(latest, f'{problem} (Reverb: {_short(e)})')
  raise RuntimeError(f'Too many damaged checkpoints in {checkpoint_dir}')


# -------------------------------------------------------------------- server
class ReplayServer:
  """An in-process Reverb server with one table per game, filled from data.

  Example:
    server = ReplayServer(['Pong'], checkpoint_dir='/tmp/reverb_ckpt')
    if not server.is_filled('Pong'):
      server.fill_from('Pong', DopamineSource('/data/Pong/1/replay_logs'),
                       fraction=0.05, seed=0)
      server.checkpoint()
    dataset = make_dataset(server.address, 'Pong', batch_size=32)
  """

  def __init__(self,
               games: Sequence[str],
               *,
               stack_size: int = specs.STACK_SIZE,
               n_step: int = 3,
               frame_shape: Sequence[int] = specs.FRAME_SHAPE,
               max_size: int = DEFAULT_MAX_SIZE,
               min_size_to_sample: int = 1,
               port: Optional[int] = None,
               checkpoint_dir: Optional[str] = None,
               validate_games: bool = True):
    """Args:
      games: game names (validated as ALE games); each gets a table named
        after its ALE name ('pong' -> 'Pong').
      stack_size, n_step, frame_shape: item layout (`item_signature`).
      max_size: items per table at most.
      min_size_to_sample: the MinSize rate limiter's threshold.
      port: gRPC port; None picks a free one.
      checkpoint_dir: where `checkpoint()` writes; if it holds a checkpoint,
        the tables are restored from the latest one at start.
      validate_games: False accepts any table names (tests, tools).
    """
    if isinstance(games, str):
      games = [games]
    if not games:
      raise ValueError('ReplayServer needs at least one game')
    self._tables = [dqn_replay.canonical_game(g) if validate_games else g
                    for g in games]
    self._stack_size = stack_size
    self._n_step = n_step
    self._frame_shape = tuple(frame_shape)
    tables = []
    for name in self._tables:
      tables += make_tables(name, stack_size, n_step, frame_shape, max_size,
                            min_size_to_sample)
    self._server = start_server(tables, port, checkpoint_dir)
    self._client = reverb.Client(self.address)
    _IN_PROCESS_SERVERS.add(self.address)
    if checkpoint_dir:
      # Restored tables keep the layout they were checkpointed with.
      info = self._client.server_info()
      for name in self._tables:
        if not _same_signature(info[name].signature,
                               item_signature(stack_size, n_step, frame_shape)):
          self._server.stop()
          raise ValueError(
              f'Table {name!r} restored from {checkpoint_dir} has signature '
              f'{info[name].signature}, not that of stack_size={stack_size}, '
              f'n_step={n_step}; use another checkpoint_dir or the same '
              'layout')

  @property
  def port(self) -> int:
    return self._server.port

  @property
  def address(self) -> str:
    return f'localhost:{self._server.port}'

  @property
  def tables(self) -> List[str]:
    return list(self._tables)

  @property
  def client(self) -> reverb.Client:
    return self._client

  def _table(self, game: str) -> str:
    if game in self._tables:
      return game
    name = dqn_replay.canonical_game(game)
    if name not in self._tables:
      raise ValueError(f'No table for game {game!r} on this server; tables: '
                       f'{self._tables}')
    return name

  def num_items(self, game: str) -> int:
    return int(self._client.server_info()[self._table(game)].current_size)

  def is_filled(self, game: str) -> bool:
    """True once a fill of `game` completed (also after a restore)."""
    info = self._client.server_info()
    return info[ready_table_name(self._table(game))].current_size > 0

  def fill(self, game: str, episodes: Iterable[Episode],
           chunk_length: Optional[int] = None) -> FillStats:
    """Writes `episodes` into the table of `game`, then marks it ready.

    Raises:
      RuntimeError: if the table was already filled.
      DataError: if no item could be made from the episodes.

    If `episodes` raises, the table is left unmarked (not ready) and the next
    `fill` empties it first.
    """
    table = self._table(game)
    if self.is_filled(table):
      raise RuntimeError(f'Table {table!r} is already filled')
    if self.num_items(table):
      # Left over by a fill that failed: start again from empty.
      self._client.reset(table)
    start = time.perf_counter()
    with EpisodeWriter(self._client, table, self._stack_size, self._n_step,
                       self._frame_shape, chunk_length) as writer:
      for episode in episodes:
        writer.write(episode)
    stats = writer.stats
    stats.seconds = time.perf_counter() - start
    if stats.items == 0:
      raise DataError(f'No transition to sample for table {table!r}: '
                      f'{stats.episodes} episodes, {stats.steps} steps')
    mark_ready(self._client, table, stats)
    logging.info('Filled table %s: %d episodes, %d steps, %d items in %.1fs',
                 table, stats.episodes, stats.steps, stats.items, stats.seconds)
    return stats

  def fill_from(self, game: str, source: Source, fraction: float = 0.05,
                mode: str = 'uniform', seed: int = 0, shard_index: int = 0,
                num_shards: int = 1,
                chunk_length: Optional[int] = None,
                action_map: Optional[action_sets.ActionMap] = None) -> FillStats:
    """`fill` from a source's subset (see `iterate_source`)."""
    return self.fill(game, iterate_source(source, fraction, mode, seed,
                                          shard_index, num_shards, action_map),
                     chunk_length=chunk_length)

  def checkpoint(self) -> str:
    """Writes a Reverb checkpoint of all tables; returns its path."""
    return write_checkpoint(self._client)

  def wait(self):
    """Blocks until the server stops (KeyboardInterrupt on SIGINT)."""
    self._server.wait()

  def stop(self):
    _IN_PROCESS_SERVERS.discard(self.address)
    self._server.stop()


# ------------------------------------------------------------------ sampling
def stack_frames(frames: tf.Tensor, step_type: tf.Tensor, stack_size: int,
                 n_step: int, packed: Optional[bool] = None) -> tf.Tensor:
  """Stacked states of a window, Dopamine's zero padding applied.

  Args:
    frames: uint8 `[B, stack_size + n_step, H, W]`, one frame per step.
    step_type: int32 `[B, stack_size + n_step]`; FIRST starts an episode.
    stack_size, n_step: the layout.
    packed: build the stacks as one uint32 per pixel (4 frames) then bitcast
      to bytes, about twice as fast as stacking bytes; None = when possible
      (stack_size 4 on a little-endian host).

  Returns:
    uint8 `[B, n_step + 1, H, W, stack_size]`: state `t` holds the frames of
    window steps `t .. t + stack_size - 1`, oldest first, with the frames of
    an episode earlier than step `t + stack_size - 1`'s set to zero.
  """
  k = stack_size
  n1 = n_step + 1
  # Episode number of each window step; a frame counts only in its episode.
  episode = tf.cumsum(tf.cast(tf.equal(step_type, FIRST), tf.int32), axis=1)
  current = episode[:, k - 1:]  # [B, n+1]
  same = [tf.equal(episode[:, j:j + n1], current) for j in range(k)]
  if packed is None:
    packed = k == 4 and sys.byteorder == 'little'
  if packed:
    if k != 4 or sys.byteorder != 'little':
      raise ValueError('packed stacking needs stack_size 4, little-endian')
    wide = tf.cast(frames, tf.uint32)
    out = None
    for j in range(k):
      # Frame j goes to byte j of each pixel's uint32 (little-endian).
      scale = tf.cast(same[j], tf.uint32) * tf.constant(256**j, tf.uint32)
      plane = wide[:, j:j + n1] * scale[:, :, tf.newaxis, tf.newaxis]
      out = plane if out is None else out + plane
    return tf.bitcast(out, tf.uint8)
  planes = [frames[:, j:j + n1] *
            tf.cast(same[j], tf.uint8)[:, :, tf.newaxis, tf.newaxis]
            for j in range(k)]
  return tf.stack(planes, axis=-1)


def items_to_trajectory(items: Dict[str, tf.Tensor],
                        stack_size: int = specs.STACK_SIZE,
                        n_step: int = 3) -> trajectory.Trajectory:
  """Sampled items `[B, ...]` (see `item_signature`) -> `Trajectory`.

  Args:
    items: dict of `[B, ...]` tensors with the `item_signature` layout.
    stack_size, n_step: the layout.

  Returns:
    `Trajectory` with observation uint8 `[B, n_step+1, H, W, stack_size]`
    (see `stack_frames`) and every other field `[B, n_step+1]`
    (policy_info `()`).
  """
  k = stack_size
  step_type = items['step_info'][:, :, 0]
  info = items['step_info'][:, k - 1:]  # [B, n+1, 3]
  return trajectory.Trajectory(
      step_type=info[:, :, 0],
      observation=stack_frames(items['frame'], step_type, k, n_step),
      action=tf.cast(info[:, :, 2], tf.int64),
      policy_info=(),
      next_step_type=info[:, :, 1],
      reward=items['reward_discount'][:, :, 0],
      discount=items['reward_discount'][:, :, 1])


def _as_list(x) -> List[str]:
  if isinstance(x, str):
    return [x]
  return list(x)


def _same_signature(got, expected) -> bool:
  return (isinstance(got, dict) and set(got) == set(expected) and all(
      tuple(got[k].shape) == tuple(expected[k].shape) and
      got[k].dtype == expected[k].dtype for k in expected))


# ------------------------------------------------------ server availability
# Seconds between "still waiting" lines.
_NOTE_EVERY_SECS = 10.0
# Addresses of the `ReplayServer`s of this process (they cannot vanish alone).
_IN_PROCESS_SERVERS = set()


def _say(message: str):
  print(f'reverb_stream: {message}', file=sys.stderr, flush=True)


def _short(error: BaseException) -> str:
  """The first line of an error's message, without TF's op decorations."""
  text = error.message if isinstance(error, tf.errors.OpError) else str(error)
  text = re.sub(r'\{\{[^}]*\}\}\s*', '', text).split(' [Op:')[0].strip()
  return text.splitlines()[0][:200] if text else type(error).__name__


class ServerUnavailableError(ConnectionError, ValueError):
  """No Reverb server answered at an address in time (the message names it).
  Also a ValueError: a wrong address is bad input, which entry points report
  in one line."""


class TableNotReadyError(TimeoutError, ValueError):
  """A table was not filled in time (the message names it and its server)."""


def _check_timeout(name: str, value: Optional[float]):
  if value is not None and not value > 0:
    raise ValueError(f'{name} must be > 0 seconds (or None), got {value!r}')


def wait_for_server(address: str, timeout_seconds: float
                    ) -> Tuple[reverb.Client, Dict]:
  """(client, server_info) of `address`, waiting up to `timeout_seconds` for
  it to answer and saying (on stderr, every 10 s) what it waits for.

  Raises:
    ServerUnavailableError: naming `address` if it did not answer in time.
  """
  _check_timeout('timeout_seconds', timeout_seconds)
  client = reverb.Client(address)
  start = time.monotonic()
  deadline = start + timeout_seconds
  next_note = start
  while True:
    remaining = deadline - time.monotonic()
    try:
      per_call = max(1, min(5, int(remaining // 2)))
      return client, client.server_info(timeout=per_call)
    except Exception as e:  # pylint: disable=broad-except
      error = e
    now = time.monotonic()
    if now >= deadline:
      raise ServerUnavailableError(
          f'No Reverb server answered at {address} within {timeout_seconds:g}s '
          f'({_short(error)}). Start it (launch/reverb_server.py) or fix the '
          'address (train_eval.reverb_addresses); the time-out is '
          'train_eval.reverb_timeout_seconds.') from error
    if now >= next_note:
      _say(f'waiting for the Reverb server at {address} '
           f'({now - start:.0f}s of {timeout_seconds:g}s): {_short(error)}')
      next_note = now + _NOTE_EVERY_SECS
    time.sleep(min(1.0, max(0.0, deadline - now)))


def _wait_ready(address: str, table: str, ready_timeout_secs: float,
                server_timeout_secs: float):
  """Info of `table` once its fill completed (its `.ready` table has an item),
  saying what it waits for."""
  start = time.monotonic()
  deadline = start + ready_timeout_secs
  next_note = start + _NOTE_EVERY_SECS
  while True:
    _, info = wait_for_server(address, server_timeout_secs)
    ready = info.get(ready_table_name(table))
    if ready is not None and ready.current_size > 0:
      return info[table]
    now = time.monotonic()
    if now > deadline:
      raise TableNotReadyError(f'Table {table!r} at {address} was not filled within '
                         f'{ready_timeout_secs:g}s (it holds '
                         f'{info[table].current_size} items so far)')
    if now >= next_note:
      _say(f'waiting for table {table!r} at {address} to be filled '
           f'({info[table].current_size} items so far, {now - start:.0f}s of '
           f'{ready_timeout_secs:g}s)')
      next_note = now + _NOTE_EVERY_SECS
    time.sleep(0.5)


def _give_up(message: str):
  """Ends the process with `message`: the thread sampling from Reverb is
  blocked inside Reverb's op, which retries a lost server forever, so no
  exception can reach it."""
  _say(f'error: {message}')
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access


class ServerWatchdog:
  """Gives up, clearly, when a Reverb server a dataset samples from is lost.

  Reverb's sampler retries a server that stopped answering forever, so a
  learner whose server died would wait silently. This thread asks every
  server for its info every `poll_seconds`; when one stops answering it says
  so (on stderr, every 10 s), says so again if it comes back (Reverb then
  reconnects by itself), and if it has not answered for `timeout_seconds`
  calls `on_lost(address, message)`, by default printing the message and
  ending the process with status 1.
  """

  def __init__(self, addresses: Sequence[str], timeout_seconds: float,
               on_lost=None, poll_seconds: Optional[float] = None):
    _check_timeout('timeout_seconds', timeout_seconds)
    self._addresses = list(dict.fromkeys(addresses))
    self._timeout = float(timeout_seconds)
    self._poll = poll_seconds or min(max(self._timeout / 4, 0.5), 10.0)
    self._on_lost = on_lost or (lambda address, message: _give_up(message))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='reverb-server-watchdog')

  def start(self) -> 'ServerWatchdog':
    self._thread.start()
    return self

  def stop(self):
    self._stop.set()

  def _run(self):
    clients = {a: reverb.Client(a) for a in self._addresses}
    lost_since: Dict[str, float] = {}
    next_note: Dict[str, float] = {}
    while not self._stop.wait(self._poll):
      for address, client in clients.items():
        try:
          client.server_info(timeout=max(1, int(min(self._poll, 5))))
        except Exception as e:  # pylint: disable=broad-except
          if self._stop.is_set():
            return
          now = time.monotonic()
          since = lost_since.setdefault(address, now)
          if now - since >= self._timeout:
            self._on_lost(address, (
                f'the Reverb server at {address} has not answered for '
                f'{now - since:.0f}s ({_short(e)}): it was stopped or killed, '
                'or the network is down. Giving up: restart it '
                '(launch/reverb_server.py with the same --checkpoint_dir '
                'restores its tables) and run the same command again to '
                'resume from the last checkpoint. The time-out is '
                'train_eval.reverb_timeout_seconds.'))
            return
          if now >= next_note.get(address, now):
            _say(f'the Reverb server at {address} does not answer '
                 f'({_short(e)}); waiting for it ({now - since:.0f}s of '
                 f'{self._timeout:g}s)')
            next_note[address] = now + _NOTE_EVERY_SECS
        else:
          if lost_since.pop(address, None) is not None:
            next_note.pop(address, None)
            _say(f'the Reverb server at {address} answers again; sampling '
                 'goes on')


def resolve_sources(server_addresses: Union[str, Sequence[str]],
                    table_names: Union[str, Sequence[str]],
                    stack_size: int = specs.STACK_SIZE,
                    n_step: int = 3,
                    frame_shape: Sequence[int] = specs.FRAME_SHAPE,
                    ready_timeout_secs: float = 600.0,
                    signature: Optional[Dict[str, tf.TensorSpec]] = None,
                    timeout_seconds: Optional[float] = None
                    ) -> List[Tuple[str, str, int]]:
  """The (address, table, num_items) pairs to sample from.

  Every table of `table_names` found on every server is used (one server per
  game, several shards of a game on several servers, or any mix); each table
  must be on at least one server, filled (waits up to `ready_timeout_secs`),
  and have the signature of `(stack_size, n_step, frame_shape)`, or
  `signature` if given (tables of other layouts, e.g. `reverb_windows`).
  Each server is waited for up to `timeout_seconds` (None: up to
  `ready_timeout_secs`), saying so on stderr while waiting.

  Raises:
    ValueError: naming a table found on no server, or with another signature.
    ServerUnavailableError: naming a server that did not answer in time.
    TableNotReadyError: naming a table not filled in time.
  """
  _check_timeout('ready_timeout_secs', ready_timeout_secs)
  _check_timeout('timeout_seconds', timeout_seconds)
  server_timeout = timeout_seconds or ready_timeout_secs
  addresses = _as_list(server_addresses)
  tables = _as_list(table_names)
  if not addresses or not tables:
    raise ValueError('need at least one server address and one table name')
  expected = signature or item_signature(stack_size, n_step, frame_shape)
  found = []
  for table in tables:
    hits = 0
    for address in addresses:
      _, info = wait_for_server(address, server_timeout)
      if table not in info:
        continue
      hits += 1
      info = _wait_ready(address, table, ready_timeout_secs, server_timeout)
      got = info.signature
      if not _same_signature(got, expected):
        raise ValueError(
            f'Table {table!r} at {address} has signature {got}, expected '
            f'{expected} (stack_size={stack_size}, n_step={n_step})')
      found.append((address, table, int(info.current_size)))
    if not hits:
      raise ValueError(f'Table {table!r} is on none of the servers {addresses}')
  return found


def sample_items(sources: Sequence[Tuple[str, str, int]],
                 signature: Dict[str, tf.TensorSpec],
                 batch_size: int,
                 *,
                 weights: Union[str, Sequence[float]] = 'size',
                 max_in_flight_samples_per_worker: Optional[int] = None,
                 num_workers_per_iterator: int = -1,
                 timeout_seconds: Optional[float] = None) -> tf.data.Dataset:
  """Batches of raw items `{column: [batch_size, ...]}` from resolved sources.

  Args:
    sources: (address, table, num_items) triples from `resolve_sources`.
    signature: the tables' item signature.
    batch_size: items per batch (drop_remainder).
    weights: interleaving of several sources: 'size' (proportional to their
      item counts, i.e. uniform over all items), 'equal', or one weight per
      source.
    max_in_flight_samples_per_worker: Reverb prefetch per worker; default
      `2 * batch_size`.
    num_workers_per_iterator: Reverb sampling threads per source (-1 = auto).
    timeout_seconds: if set, a `ServerWatchdog` watches the servers (except
      this process's own `ReplayServer`s) while the dataset (or an iterator
      over it) exists: a server lost for that long ends the process with a
      clear error, where Reverb would wait forever. None: no watchdog.
  """
  _check_timeout('timeout_seconds', timeout_seconds)
  in_flight = max_in_flight_samples_per_worker or 2 * batch_size
  ds = unbatched_items(sources, signature, weights=weights,
                       max_in_flight_samples_per_worker=in_flight,
                       num_workers_per_iterator=num_workers_per_iterator)
  ds = ds.batch(batch_size, drop_remainder=True)
  return watch_servers(ds, [a for a, _, _ in sources], timeout_seconds)


def unbatched_items(sources: Sequence[Tuple[str, str, int]],
                    signature: Dict[str, tf.TensorSpec],
                    *,
                    weights: Union[str, Sequence[float]] = 'size',
                    max_in_flight_samples_per_worker: int = 64,
                    num_workers_per_iterator: int = -1) -> tf.data.Dataset:
  """Single raw items `{column: [...]}` sampled from resolved sources,
  interleaved by `weights` (see `sample_items`); infinite."""
  dtypes = {k: v.dtype for k, v in signature.items()}
  shapes = {k: v.shape for k, v in signature.items()}
  datasets = [
      reverb.TrajectoryDataset(
          server_address=address, table=table, dtypes=dtypes, shapes=shapes,
          max_in_flight_samples_per_worker=max_in_flight_samples_per_worker,
          num_workers_per_iterator=num_workers_per_iterator).map(
              lambda sample: sample.data)
      for address, table, _ in sources
  ]
  if len(datasets) == 1:
    return datasets[0]
  if isinstance(weights, str):
    if weights == 'size':
      w = [float(max(n, 1)) for _, _, n in sources]
    elif weights == 'equal':
      w = [1.0] * len(sources)
    else:
      raise ValueError(f"weights must be 'size', 'equal' or a list, got "
                       f'{weights!r}')
  else:
    w = [float(x) for x in weights]
    if len(w) != len(sources):
      raise ValueError(f'{len(w)} weights for {len(sources)} sources '
                       f'{[(a, t) for a, t, _ in sources]}')
  total = sum(w)
  return tf.data.Dataset.sample_from_datasets(
      datasets, weights=[x / total for x in w])


def watch_servers(ds: tf.data.Dataset, addresses: Sequence[str],
                  timeout_seconds: Optional[float]) -> tf.data.Dataset:
  """`ds`, with a `ServerWatchdog` on the servers of `addresses` that are not
  this process's own (if `timeout_seconds` is set) while `ds` or a dataset
  built from it exists."""
  remote = [a for a in addresses if a not in _IN_PROCESS_SERVERS]
  if timeout_seconds and remote:
    watchdog = ServerWatchdog(remote, timeout_seconds).start()
    weakref.finalize(ds, watchdog.stop)  # Datasets after it keep it alive.
  return ds


def make_dataset(server_addresses: Union[str, Sequence[str]],
                 table_names: Union[str, Sequence[str]],
                 batch_size: int,
                 n_step: int = 3,
                 stack_size: int = specs.STACK_SIZE,
                 frame_shape: Sequence[int] = specs.FRAME_SHAPE,
                 *,
                 weights: Union[str, Sequence[float]] = 'size',
                 max_in_flight_samples_per_worker: Optional[int] = None,
                 num_workers_per_iterator: int = -1,
                 num_parallel_calls: int = tf.data.AUTOTUNE,
                 prefetch: int = tf.data.AUTOTUNE,
                 ready_timeout_secs: float = 600.0,
                 timeout_seconds: Optional[float] = None) -> tf.data.Dataset:
  """One replica's dataset of `Trajectory` batches, sampled from Reverb.

  Args:
    server_addresses: 'host:port' or a list: every server to read from.
    table_names: table (game) name or names; see `resolve_sources`.
    batch_size: transitions per batch (this replica's batch size).
    n_step, stack_size, frame_shape: the tables' layout.
    weights: how the (server, table) sources are interleaved: 'size'
      (proportional to their item counts, i.e. uniform over all transitions),
      'equal', or one weight per resolved source.
    max_in_flight_samples_per_worker: Reverb prefetch per worker; default
      `2 * batch_size`.
    num_workers_per_iterator: Reverb sampling threads per source (-1 = auto).
    num_parallel_calls: parallelism of the stacking map.
    prefetch: batches prefetched.
    ready_timeout_secs: how long to wait for tables to be filled.
    timeout_seconds: how long a server may not answer: at the start (None:
      `ready_timeout_secs`) and, if set, while sampling (see `sample_items`;
      Reverb alone would wait forever for a lost server). While waiting, what
      is waited for is said on stderr.

  Returns:
    A `tf.data.Dataset` of `Trajectory` with observation uint8
    `[batch_size, n_step + 1, H, W, stack_size]`, other fields
    `[batch_size, n_step + 1]`; infinite.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  sources = resolve_sources(server_addresses, table_names, stack_size, n_step,
                            frame_shape, ready_timeout_secs,
                            timeout_seconds=timeout_seconds)
  signature = item_signature(stack_size, n_step, frame_shape)
  with tf.device('/cpu:0'):
    ds = sample_items(sources, signature, batch_size, weights=weights,
                      max_in_flight_samples_per_worker=(
                          max_in_flight_samples_per_worker),
                      num_workers_per_iterator=num_workers_per_iterator,
                      timeout_seconds=timeout_seconds)
    ds = ds.map(lambda items: items_to_trajectory(items, stack_size, n_step),
                num_parallel_calls=num_parallel_calls, deterministic=False)
    ds = ds.prefetch(prefetch)
  return ds


def make_distributed_dataset(strategy: tf.distribute.Strategy,
                             server_addresses: Union[str, Sequence[str]],
                             table_names: Union[str, Sequence[str]],
                             global_batch_size: int,
                             n_step: int = 3,
                             stack_size: int = specs.STACK_SIZE,
                             **kwargs) -> tf.distribute.DistributedDataset:
  """Per-replica Reverb datasets for `strategy`.

  Each input pipeline (host) builds `make_dataset` with the per-replica batch
  size `global_batch_size / num_replicas` via
  `strategy.distribute_datasets_from_function`; the Reverb op stays on the
  host CPU and batches are copied to the replicas' devices.

  Args:
    strategy: any `tf.distribute.Strategy`.
    server_addresses, table_names: see `make_dataset`.
    global_batch_size: batch size summed over replicas (divisible by them).
    n_step, stack_size: the tables' layout.
    **kwargs: more `make_dataset` arguments.

  Returns:
    A `DistributedDataset` of per-replica `Trajectory` batches.
  """
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible '
                     f'by the {replicas} replicas')

  def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
    return make_dataset(server_addresses, table_names,
                        ctx.get_per_replica_batch_size(global_batch_size),
                        n_step=n_step, stack_size=stack_size, **kwargs)

  return strategy.distribute_datasets_from_function(
      dataset_fn,
      options=tf.distribute.InputOptions(experimental_fetch_to_device=True))
