"""Dopamine DQN-Replay checkpoint files: lazy reading, validation, episodes.

The DQN-Replay dataset (Agarwal et al., 2020) is a set of Dopamine
`OutOfGraphReplayBuffer` checkpoints, one directory per game and run:

  {root}/{GAME}/{RUN}/replay_logs/
      $store$_observation_ckpt.{N}.gz   uint8   [C, 84, 84]  one frame per index
      $store$_action_ckpt.{N}.gz        int32   [C]
      $store$_reward_ckpt.{N}.gz        float32 [C]          raw reward
      $store$_terminal_ckpt.{N}.gz      uint8   [C]          1 = game over
      add_count_ckpt.{N}.gz             int     []           adds ever made
      invalid_range_ckpt.{N}.gz         int     [stack + horizon]
      episode_end_indices_ckpt.{N}.gz   (optional, ignored)

Each file is a gzip of `np.save`. `C` is the buffer capacity (1M in the
published data: a real observation file is 7 GB uncompressed), so everything
here reads lazily: metadata first (`terminal`, `add_count`, `invalid_range`
and the `.npy` headers of the other files), then the frames of the selected
episodes, streamed out of one gzip at a time.

The buffer is circular. `cursor = add_count % C` is where the next add would
go; when `add_count >= C` the chronological order is `cursor, cursor+1, ...,
C-1, 0, ..., cursor-1`. Dopamine's `add` writes `stack_size - 1` all-zero
"padding" transitions before the first transition of every episode (after a
terminal, or into an empty buffer), so the stacked state of an episode's first
step is zero frames plus its own frame. Dopamine never samples an index in
`invalid_range` (the indices straddling the cursor) nor one whose state stack
crosses a terminal.

This module turns a checkpoint into `Episode`s: maximal runs of non-padding
indices ending at a terminal (or cut by the cursor or by a subset), with the
padding removed. The Reverb writer (`reverb_stream.py`) re-creates the zero
padding when stacking, so sampling reproduces Dopamine's transitions exactly:
an episode that starts right at the cursor (its beginning was overwritten) is
flagged `sampleable=False` on its first steps, exactly where Dopamine would
need the overwritten frames or where `invalid_range` forbids sampling.

`DopamineReplayWriter` is the inverse: a minimal `OutOfGraphReplayBuffer`
(`add` with padding, `save` to gzip files) used by
`launch/generate_dqn_replay.py` and by tests to write files exactly like the
published dataset.

Manifest. A directory written by `replay_writer.ReplayDirWriter` also holds
`manifest.json`: the id of the run that wrote it and, per checkpoint, the
size and CRC-32 of each of its files. Reading such a directory uses only the
checkpoints the manifest lists and checks every file against it, so files of
another run, of an interrupted write or changed since are refused (naming the
file), never mixed in. Directories without a manifest (the published
DQN-Replay files) are read as they are.
"""
import concurrent.futures
import contextlib
import dataclasses
import gzip
import json
import logging
import os
import re
import signal
import tempfile
import threading
import zlib
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

STORE_PREFIX = '$store$_'
# The four per-index arrays and their dtypes in the published files.
STORE_FIELDS = ('observation', 'action', 'reward', 'terminal')
STORE_DTYPES = {
    'observation': np.dtype(np.uint8),
    'action': np.dtype(np.int32),
    'reward': np.dtype(np.float32),
    'terminal': np.dtype(np.uint8),
}
# Non-store files every checkpoint must have.
META_FIELDS = ('add_count', 'invalid_range')
# Files that may be present and are not needed.
OPTIONAL_FIELDS = ('episode_end_indices',)
REQUIRED_FILES = tuple(STORE_PREFIX + f for f in STORE_FIELDS) + META_FIELDS

DEFAULT_FRAME_SHAPE = (84, 84)
DEFAULT_STACK_SIZE = 4
SUBSET_MODES = ('uniform', 'first')

_CKPT_RE = re.compile(r'^(?P<name>.+)_ckpt\.(?P<suffix>\d+)\.gz$')
_READ_BLOCK_BYTES = 1 << 24

MANIFEST_NAME = 'manifest.json'
MANIFEST_FORMAT = 'tf_offline_q.dqn_replay.manifest'
MANIFEST_VERSION = 1
# Temporary files: hidden, `.{final name}.{random}.tmp`; never read as data.
_TMP_RE = re.compile(r'^\..+\.tmp$')


class DataError(ValueError):
  """Bad input data; the message names the file or field at fault."""


# ----------------------------------------------------------------- file names
def checkpoint_filename(replay_dir: str, name: str, suffix: int) -> str:
  """Path of one Dopamine file, e.g. `name='$store$_observation'`."""
  return os.path.join(replay_dir, f'{name}_ckpt.{int(suffix)}.gz')


def dopamine_replay_dir(root: str, game: str, run: int = 1) -> str:
  """`{root}/{GAME}/{RUN}/replay_logs`, validating `game` against the ALE.

  Args:
    root: directory holding one sub-directory per game, as published.
    game: game name, any case ('pong', 'Pong').
    run: run number (1..5 in the published data).

  Raises:
    ValueError: naming `game` if it is not an ALE game.
  """
  return os.path.join(root, canonical_game(game), str(int(run)), 'replay_logs')


def canonical_game(game: str) -> str:
  """Canonical name of `game` ('pong' -> 'Pong', 'minatar:breakout' -> 'MinAtar-Breakout');
  ValueError if unknown."""
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  return games.canonical_game_name(game)


def list_checkpoints(replay_dir: str) -> List[int]:
  """Sorted suffixes `N` of the complete checkpoints in `replay_dir`.

  Raises:
    FileNotFoundError: if `replay_dir` does not exist.
    DataError: if no checkpoint file is present, or if a checkpoint has some of
      its files but not all (naming the missing files).
  """
  if not os.path.isdir(replay_dir):
    raise FileNotFoundError(f'Dopamine replay directory not found: {replay_dir}')
  found = checkpoint_files_on_disk(replay_dir)
  manifest = read_manifest(replay_dir)
  if manifest is not None:
    committed = manifest_checkpoints(manifest)
    stray = sorted(set(found) - set(committed))
    if stray:
      logging.warning(
          'Ignoring the files of checkpoint(s) %s in %s: not in its manifest '
          '(a write in progress or interrupted, or files of another run)',
          stray, replay_dir)
    if not manifest.get('finished'):
      logging.warning(
          'The run writing %s (%s) has not finished: it is still running or '
          'was interrupted; reading its checkpoints %s', replay_dir,
          manifest['run_id'], committed)
    if not committed:
      raise DataError(
          f'The dataset in {replay_dir} (run {manifest["run_id"]}) has no '
          'complete checkpoint yet: its writer is still on the first one or '
          'was interrupted before finishing it')
    return committed
  if not found:
    raise DataError(
        f'No Dopamine checkpoint files (*_ckpt.N.gz) in {replay_dir}')
  for suffix, names in sorted(found.items()):
    missing = [n for n in REQUIRED_FILES if n not in names]
    if missing:
      raise DataError(
          'Incomplete Dopamine checkpoint {} in {}: missing {}'.format(
              suffix, replay_dir, ', '.join(
                  checkpoint_filename(replay_dir, n, suffix) for n in missing)))
  return sorted(found)


def checkpoint_files_on_disk(replay_dir: str) -> Dict[int, set]:
  """`{suffix: {file name stems}}` of the `*_ckpt.N.gz` files in `replay_dir`."""
  found: Dict[int, set] = {}
  for fname in os.listdir(replay_dir):
    match = _CKPT_RE.match(fname)
    if match:
      found.setdefault(int(match['suffix']), set()).add(match['name'])
  return found


# ------------------------------------------------------------------- manifest
def manifest_path(replay_dir: str) -> str:
  return os.path.join(replay_dir, MANIFEST_NAME)


def read_manifest(replay_dir: str) -> Optional[dict]:
  """The manifest of `replay_dir`, or None if it has none (plain Dopamine).

  Layout (JSON): {"format", "version", "run_id", "created", "metadata": {...},
  "finished" (once the run wrote all it meant to),
  "checkpoints": {"N": {"run_id", "written", "add_count", "capacity",
  "stack_size", "update_horizon", "frame_shape",
  "files": {file name: {"size", "crc32"}}}}}.

  Raises:
    DataError: naming the manifest if it is unreadable or not one of ours.
  """
  path = manifest_path(replay_dir)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: unreadable dataset manifest ({e}); regenerate '
                    'the dataset (--overwrite)') from e
  if (not isinstance(manifest, dict) or
      manifest.get('format') != MANIFEST_FORMAT or
      not isinstance(manifest.get('checkpoints'), dict) or
      not manifest.get('run_id')):
    raise DataError(f'{path}: not a {MANIFEST_FORMAT} file')
  if manifest.get('version') != MANIFEST_VERSION:
    raise DataError(f'{path}: manifest version {manifest.get("version")}, this '
                    f'code reads version {MANIFEST_VERSION}')
  return manifest


def manifest_checkpoints(manifest: dict) -> List[int]:
  """Sorted suffixes of the checkpoints a manifest lists."""
  return sorted(int(k) for k in manifest['checkpoints'])


def file_crc32(path: str) -> int:
  """CRC-32 of the bytes of `path` (as stored, i.e. of the gzip)."""
  crc = 0
  with open(path, 'rb') as f:
    while True:
      block = f.read(_READ_BLOCK_BYTES)
      if not block:
        return crc
      crc = zlib.crc32(block, crc)


_verified: Dict[tuple, int] = {}
_verified_lock = threading.Lock()


def _checked_crc32(path: str) -> int:
  """`file_crc32`, remembered while the file's size, mtime and inode stay."""
  st = os.stat(path)
  key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
  with _verified_lock:
    if key in _verified:
      return _verified[key]
  crc = file_crc32(path)
  with _verified_lock:
    _verified[key] = crc
  return crc


def verify_checkpoint(replay_dir: str, suffix: int,
                      manifest: Optional[dict] = None):
  """Checks that checkpoint `suffix` is complete and belongs to the manifest's
  run: listed, written by the manifest's run, every file of the size and
  CRC-32 recorded. No-op for a directory without a manifest.

  Raises:
    DataError: naming the checkpoint or the file at fault and what to do.
  """
  if manifest is None:
    manifest = read_manifest(replay_dir)
    if manifest is None:
      return
  run_id = manifest['run_id']
  entry = manifest['checkpoints'].get(str(int(suffix)))
  if entry is None:
    raise DataError(
        f'Checkpoint {suffix} of {replay_dir} is not in its manifest '
        f'({manifest_path(replay_dir)}, run {run_id}, checkpoints '
        f'{manifest_checkpoints(manifest)}): its files were left by an '
        'interrupted write or another run. Resume the run that writes this '
        'dataset, or regenerate it with --overwrite.')
  if entry.get('run_id') != run_id:
    raise DataError(
        f'Checkpoint {suffix} of {replay_dir} was written by run '
        f'{entry.get("run_id")}, the dataset is run {run_id} '
        f'({manifest_path(replay_dir)}); regenerate it with --overwrite.')
  for fname, record in sorted(entry['files'].items()):
    path = os.path.join(replay_dir, fname)
    if not os.path.exists(path):
      raise DataError(f'Missing file {path} of checkpoint {suffix} (listed in '
                      f'{manifest_path(replay_dir)}); regenerate the dataset '
                      '(--overwrite).')
    size = os.path.getsize(path)
    if size != record['size'] or _checked_crc32(path) != record['crc32']:
      raise DataError(
          f'{path} is not the file run {run_id} wrote as checkpoint {suffix} '
          f'(size {size}, recorded {record["size"]}; or its checksum differs): '
          'it was replaced by another run or damaged. Regenerate the dataset '
          '(--overwrite).')


# ------------------------------------------------------------ gzip'd np.save
class NpyGzFile:
  """A gzip of `np.save`, read lazily: header first, rows on demand.

  Attributes:
    path: the file.
    shape: array shape from the `.npy` header.
    dtype: array dtype from the header.
  """

  def __init__(self, path: str):
    self.path = path
    if not os.path.exists(path):
      raise DataError(f'Missing file: {path}')
    with self._open() as f:
      self.shape, self.dtype, self._data_offset = self._read_header(f)

  def _open(self):
    return gzip.open(self.path, 'rb')

  def _read_header(self, f):
    try:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
      else:
        raise DataError(f'{self.path}: unsupported .npy version {version}')
    except (OSError, EOFError, zlib.error) as e:
      raise DataError(
          f'{self.path}: not a readable gzip of an np.save array ({e})') from e
    except ValueError as e:
      if isinstance(e, DataError):
        raise
      raise DataError(f'{self.path}: not an np.save array ({e})') from e
    if fortran and len(shape) > 1:
      raise DataError(f'{self.path}: Fortran-ordered arrays are not supported')
    if dtype.hasobject:
      raise DataError(f'{self.path}: object arrays are not supported')
    return tuple(shape), dtype, f.tell()

  @property
  def row_bytes(self) -> int:
    return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

  def _readinto(self, f, view: memoryview):
    """Fills `view` from `f`, raising DataError on a short read."""
    got = 0
    total = len(view)
    while got < total:
      try:
        n = f.readinto(view[got:])
      except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f'{self.path}: truncated or corrupt gzip ({e})') from e
      if not n:
        raise DataError(
            f'{self.path}: file ends early (truncated?): expected '
            f'{self.shape} {self.dtype}')
      got += n

  def read(self) -> np.ndarray:
    """The whole array (use for the small per-index arrays only)."""
    out = np.empty(self.shape, dtype=self.dtype)
    with self._open() as f:
      f.seek(self._data_offset)
      self._readinto(f, memoryview(out.reshape(-1).view(np.uint8)))
    return out

  def read_ranges(
      self, ranges: Sequence[Tuple[int, int]]) -> Iterator[np.ndarray]:
    """Streams rows `[start, stop)` of each range, in ascending `start` order.

    The gzip is decompressed once, front to back; rows outside the ranges are
    skipped without being kept, so memory is the size of the ranges read.

    Args:
      ranges: `(start, stop)` row ranges, sorted by `start`, not overlapping.

    Yields:
      One array `[stop - start, *shape[1:]]` per range, in order.
    """
    row_bytes = self.row_bytes
    num_rows = self.shape[0] if self.shape else 0
    scratch = None
    with self._open() as f:
      f.seek(self._data_offset)
      position = 0
      for start, stop in ranges:
        if not 0 <= start <= stop <= num_rows or start < position:
          raise ValueError(
              f'{self.path}: bad or unsorted row range [{start}, {stop}) '
              f'(rows {num_rows}, at {position})')
        skip = (start - position) * row_bytes
        while skip > 0:
          if scratch is None:
            scratch = memoryview(bytearray(min(_READ_BLOCK_BYTES, skip)))
          n = min(skip, len(scratch))
          self._readinto(f, scratch[:n])
          skip -= n
        out = np.empty((stop - start,) + self.shape[1:], dtype=self.dtype)
        self._readinto(f, memoryview(out.reshape(-1).view(np.uint8)))
        position = stop
        yield out


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


class _Crc32Writer:
  """A binary file wrapper counting the size and CRC-32 of what is written."""

  def __init__(self, raw):
    self._raw = raw
    self.size = 0
    self.crc32 = 0

  def write(self, data):
    data = memoryview(data).cast('B')
    self.size += len(data)
    self.crc32 = zlib.crc32(data, self.crc32)
    return self._raw.write(data)

  def flush(self):
    self._raw.flush()


def is_temporary_file(fname: str) -> bool:
  """A name of the temporaries `write_checkpoint_files` writes."""
  return bool(_TMP_RE.match(fname))


@contextlib.contextmanager
def _sigterm_as_exit():
  """Turns SIGTERM into SystemExit (so `finally` and `except` run and remove
  temporaries) while writing, if in the main thread and SIGTERM has its
  default action; a no-op otherwise."""
  installed = False
  if threading.current_thread() is threading.main_thread():
    try:
      installed = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    except ValueError:
      installed = False
  if installed:
    def _exit(signum, frame):
      del frame
      raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _exit)
  try:
    yield
  finally:
    if installed:
      signal.signal(signal.SIGTERM, signal.SIG_DFL)


def write_checkpoint_files(replay_dir: str, suffix: int,
                           arrays: Dict[str, np.ndarray],
                           compresslevel: int = 6) -> Dict[str, dict]:
  """Writes one checkpoint's files (`{name stem: array}`), all or none.

  Every file is written to a hidden temporary in `replay_dir` (`.NAME.tmp`),
  and renamed into place only when all of them are complete; an exception,
  KeyboardInterrupt or SIGTERM removes the temporaries. Only a SIGKILL or a
  crash can leave one; `replay_writer.ReplayDirWriter` removes those when it
  next opens the directory, and readers never look at them.

  Returns:
    `{file name: {"size": bytes, "crc32": CRC-32 of the bytes}}`.
  """
  os.makedirs(replay_dir, exist_ok=True)
  temporaries = []
  records = {}
  with _sigterm_as_exit():
    try:
      for name, array in arrays.items():
        final = checkpoint_filename(replay_dir, name, suffix)
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{os.path.basename(final)}.', suffix='.tmp',
            dir=replay_dir)
        temporaries.append((tmp, final))
        with os.fdopen(fd, 'wb') as raw:
          counted = _Crc32Writer(raw)
          with gzip.GzipFile(fileobj=counted, mode='wb',
                             compresslevel=compresslevel, mtime=0) as out:
            np.save(out, np.asarray(array), allow_pickle=False)
          raw.flush()
          os.fsync(raw.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        records[os.path.basename(final)] = {'size': counted.size,
                                            'crc32': counted.crc32}
      for tmp, final in temporaries:
        os.replace(tmp, final)
    except BaseException:
      for tmp, _ in temporaries:
        if os.path.exists(tmp):
          os.remove(tmp)
      raise
  return records


# ------------------------------------------------------------------ episodes
@dataclasses.dataclass
class Episode:
  """One episode (or a cut piece of one), without Dopamine's zero padding.

  Attributes:
    observation: uint8 `[L, H, W]`, one frame per step (the newest frame of
      that step's stacked state).
    action: int64 `[L]`, the action taken at each step.
    reward: float32 `[L]`, the raw reward that action earned.
    terminal: True if the last step's transition ended the game (Dopamine's
      `terminal`); False if the episode was cut (checkpoint cursor, subset,
      or an RLDS episode truncated by the time limit): then the last step only
      serves as a next state.
    checkpoint_id: Dopamine checkpoint suffix the episode comes from.
    episode_id: index of the episode within its checkpoint, chronological.
    sampleable: bool `[L]`: False on steps that may not start a sampled
      transition even though the episode allows it (`invalid_range`, or the
      first steps of an episode whose beginning was overwritten in the
      circular buffer). None means all True.
    at_cursor: the episode's last step is the newest one in the buffer.
      Dopamine samples no index in the last `update_horizon` before its
      cursor, even when the episode ended in a terminal; the writer applies
      the same rule for its `n_step`.
  """
  observation: np.ndarray
  action: np.ndarray
  reward: np.ndarray
  terminal: bool
  checkpoint_id: int = 0
  episode_id: int = 0
  sampleable: Optional[np.ndarray] = None
  at_cursor: bool = False

  def __post_init__(self):
    n = len(self.observation)
    for field in ('action', 'reward'):
      if len(getattr(self, field)) != n:
        raise DataError(
            f'Episode ({self.checkpoint_id}, {self.episode_id}): {field} has '
            f'{len(getattr(self, field))} steps, observation has {n}')
    reward = np.asarray(self.reward)
    if reward.size and not np.isfinite(reward).all():
      t = int(np.flatnonzero(~np.isfinite(reward))[0])
      raise DataError(
          f'Episode ({self.checkpoint_id}, {self.episode_id}): reward '
          f'{reward[t]} at step {t}; the dataset is corrupt')
    if self.sampleable is not None and len(self.sampleable) != n:
      raise DataError(
          f'Episode ({self.checkpoint_id}, {self.episode_id}): sampleable has '
          f'{len(self.sampleable)} steps, observation has {n}')

  def __len__(self) -> int:
    return len(self.observation)

  @property
  def discount(self) -> np.ndarray:
    """float32 `[L]`: 0 on the last step of a terminal episode, else 1."""
    d = np.ones(len(self), dtype=np.float32)
    if self.terminal and len(self):
      d[-1] = 0.0
    return d

  def sampleable_mask(self) -> np.ndarray:
    """bool `[L]`, `sampleable` with None expanded to all True."""
    if self.sampleable is None:
      return np.ones(len(self), dtype=bool)
    return np.asarray(self.sampleable, dtype=bool)


@dataclasses.dataclass(frozen=True)
class EpisodeInfo:
  """Where one episode lies in a Dopamine checkpoint (no data).

  Attributes:
    checkpoint_id: checkpoint suffix.
    episode_id: chronological index within the checkpoint.
    segments: storage index ranges `(start, stop)`, in chronological order
      (two when the episode wraps around the end of the circular buffer).
    terminal: the last index is a terminal.
    headless: the episode's beginning is not in the buffer (overwritten, or
      cut off by a `first` subset): its first `stack_size - 1` steps lack the
      frames their stacks need and are not sampleable.
    at_cursor: its last index is the newest of the buffer (`cursor - 1`).
  """
  checkpoint_id: int
  episode_id: int
  segments: Tuple[Tuple[int, int], ...]
  terminal: bool
  headless: bool
  at_cursor: bool = False

  @property
  def length(self) -> int:
    return sum(stop - start for start, stop in self.segments)

  def indices(self) -> np.ndarray:
    """int64 `[L]` storage indices of the episode's steps, in order."""
    return np.concatenate(
        [np.arange(start, stop, dtype=np.int64) for start, stop in self.segments])


@dataclasses.dataclass
class CheckpointInfo:
  """Validated metadata of one Dopamine checkpoint.

  Attributes:
    replay_dir: the directory.
    suffix: checkpoint number `N`.
    capacity: buffer capacity `C` (length of every per-index array).
    add_count: adds ever made (including padding).
    invalid_range: int64 indices Dopamine never samples.
    terminal: uint8 `[C]`.
    episodes: the episodes, chronological.
    num_steps: non-padding indices holding data.
  """
  replay_dir: str
  suffix: int
  capacity: int
  add_count: int
  invalid_range: np.ndarray
  terminal: np.ndarray
  episodes: List[EpisodeInfo]
  num_steps: int

  def filename(self, name: str) -> str:
    return checkpoint_filename(self.replay_dir, name, self.suffix)

  @property
  def is_full(self) -> bool:
    return self.add_count >= self.capacity

  @property
  def cursor(self) -> int:
    return self.add_count % self.capacity


def _scalar_int(path: str) -> int:
  array = NpyGzFile(path).read()
  if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
    raise DataError(f'{path}: expected one integer, got {array.dtype} '
                    f'{array.shape}')
  value = int(array.reshape(()))
  if value < 0:
    raise DataError(f'{path}: negative add_count {value}')
  return value


def _check_values(headers: Dict[str, 'NpyGzFile'], indices: np.ndarray,
                  action: np.ndarray, reward: np.ndarray):
  """DataError naming the file and the first index of `indices` (the filled
  part of the buffer) holding a NaN/infinite reward or a negative action."""
  bad = indices[~np.isfinite(reward[indices])]
  if bad.size:
    raise DataError(
        f'{headers["reward"].path}: reward {reward[bad[0]]} at index '
        f'{bad[0]} ({bad.size} non-finite rewards in all); the dataset is '
        'corrupt: regenerate it or leave this checkpoint out')
  bad = indices[action[indices] < 0]
  if bad.size:
    raise DataError(
        f'{headers["action"].path}: action {action[bad[0]]} at index '
        f'{bad[0]} ({bad.size} negative actions in all); actions are '
        'indices into the action set, so the dataset is corrupt')


def read_checkpoint_info(replay_dir: str,
                         suffix: int,
                         stack_size: int = DEFAULT_STACK_SIZE,
                         frame_shape: Sequence[int] = DEFAULT_FRAME_SHAPE,
                         storage_limit: Optional[int] = None) -> CheckpointInfo:
  """Reads and validates one checkpoint's metadata; no frame is decompressed.

  Args:
    replay_dir: a `.../replay_logs` directory.
    suffix: checkpoint number `N`.
    stack_size: the stack size the files were recorded with (Dopamine writes
      `stack_size - 1` padding transitions before each episode).
    frame_shape: expected `[H, W]` of one frame.
    storage_limit: if set, only storage indices `< storage_limit` are kept
      (Dopamine's loader with a smaller `replay_capacity`: the "first" subset).

  Returns:
    A `CheckpointInfo` whose `episodes` cover every non-padding index kept.

  Raises:
    DataError: naming the file for a missing or truncated file, arrays whose
      lengths disagree, a wrong dtype or observation shape, a NaN or infinite
      reward or a negative action (with its index), padding transitions that
      are not zero, or (with a manifest) a checkpoint or file that is not the
      one the dataset's run wrote (see `verify_checkpoint`).
  """
  if stack_size < 1:
    raise ValueError(f'stack_size must be >= 1, got {stack_size}')
  path = lambda name: checkpoint_filename(replay_dir, name, suffix)
  verify_checkpoint(replay_dir, suffix)
  missing = [path(n) for n in REQUIRED_FILES if not os.path.exists(path(n))]
  if missing:
    raise DataError('Missing file(s) of Dopamine checkpoint {}: {}'.format(
        suffix, ', '.join(missing)))

  headers = {f: NpyGzFile(path(STORE_PREFIX + f)) for f in STORE_FIELDS}
  capacity = headers['terminal'].shape[0] if headers['terminal'].shape else -1
  for field, header in headers.items():
    if header.dtype != STORE_DTYPES[field]:
      raise DataError(f'{header.path}: field {field!r} has dtype '
                      f'{header.dtype}, expected {STORE_DTYPES[field]}')
    expected_rank = 3 if field == 'observation' else 1
    if len(header.shape) != expected_rank:
      raise DataError(f'{header.path}: field {field!r} has shape '
                      f'{header.shape}, expected rank {expected_rank}')
    if header.shape[0] != capacity:
      raise DataError(
          f'Lengths disagree in Dopamine checkpoint {suffix} of {replay_dir}: '
          f'{field} has {header.shape[0]} entries ({header.path}), terminal '
          f'has {capacity} ({headers["terminal"].path})')
  obs_shape = headers['observation'].shape[1:]
  if tuple(obs_shape) != tuple(frame_shape):
    raise DataError(f'{headers["observation"].path}: observation frames have '
                    f'shape {tuple(obs_shape)}, expected {tuple(frame_shape)}')
  if capacity < 1:
    raise DataError(f'{headers["terminal"].path}: empty buffer')

  add_count = _scalar_int(path('add_count'))
  invalid = NpyGzFile(path('invalid_range')).read()
  if invalid.ndim != 1 or not (np.issubdtype(invalid.dtype, np.integer) or
                               np.issubdtype(invalid.dtype, np.floating)):
    raise DataError(f'{path("invalid_range")}: expected a 1-D array of '
                    f'indices, got {invalid.dtype} {invalid.shape}')
  invalid = invalid.astype(np.int64) % capacity
  terminal = headers['terminal'].read()

  full = add_count >= capacity
  if full:
    chron = (add_count % capacity + np.arange(capacity)) % capacity
  else:
    chron = np.arange(add_count)
  if len(chron) == 0:
    raise DataError(f'{path("add_count")}: add_count is 0, the buffer is empty')

  # Padding: the stack_size - 1 positions after each terminal (chronological),
  # and the first stack_size - 1 positions of a buffer that never wrapped.
  n = len(chron)
  term_chron = terminal[chron].astype(bool)
  pad = np.zeros(n, dtype=bool)
  term_pos = np.flatnonzero(term_chron)
  for k in range(1, stack_size):
    pad[term_pos[term_pos + k < n] + k] = True
  if not full:
    pad[:stack_size - 1] = True
  action = headers['action'].read()
  reward = headers['reward'].read()
  _check_values(headers, chron, action, reward)
  pad_idx = chron[pad]
  if pad_idx.size:
    bad = pad_idx[(action[pad_idx] != 0) | (reward[pad_idx] != 0) |
                  (terminal[pad_idx] != 0)]
    if bad.size:
      raise DataError(
          f'Dopamine checkpoint {suffix} of {replay_dir}: index {bad[0]} should'
          f' be a zero padding transition (after a terminal, stack_size='
          f'{stack_size}) but has action/reward/terminal '
          f'{action[bad[0]]}/{reward[bad[0]]}/{terminal[bad[0]]} '
          f'({headers["action"].path}); wrong stack_size?')

  keep = ~pad
  if storage_limit is not None:
    keep &= chron < storage_limit
  # Runs of kept positions, cut after each terminal.
  prev_keep = np.concatenate([[False], keep[:-1]])
  prev_term = np.concatenate([[False], term_chron[:-1]])
  next_keep = np.concatenate([keep[1:], [False]])
  starts = np.flatnonzero(keep & (~prev_keep | prev_term))
  ends = np.flatnonzero(keep & (~next_keep | term_chron))
  prev_pad = np.concatenate([[False], pad[:-1]])
  episodes = []
  for p0, p1 in zip(starts.tolist(), ends.tolist()):
    # A run starts cleanly after padding or a terminal; otherwise its
    # beginning is gone (the cursor of a full buffer, or a subset's limit).
    headless = (p0 == 0 and full) or (p0 > 0 and not prev_pad[p0] and
                                      not prev_term[p0])
    first, last = int(chron[p0]), int(chron[p1])
    if last >= first:
      segments = ((first, last + 1),)
    else:  # Wraps around the end of the circular buffer.
      segments = ((first, capacity), (0, last + 1))
    episodes.append(EpisodeInfo(
        checkpoint_id=int(suffix), episode_id=len(episodes), segments=segments,
        terminal=bool(term_chron[p1]), headless=bool(headless),
        at_cursor=p1 == n - 1))

  return CheckpointInfo(
      replay_dir=replay_dir, suffix=int(suffix), capacity=int(capacity),
      add_count=int(add_count), invalid_range=invalid, terminal=terminal,
      episodes=episodes, num_steps=int(keep.sum()))


# ------------------------------------------------------------------- subsets
def select_uniform(num_episodes: int, fraction: float, seed: int) -> np.ndarray:
  """Sorted positions of `round(fraction * num_episodes)` episodes, at random.

  Deterministic for a seed; the same rule for Dopamine and RLDS sources, so
  the same data read from either selects the same episodes.

  Raises:
    DataError: if the subset is empty.
  """
  _check_fraction(fraction)
  k = int(round(fraction * num_episodes))
  if k < 1:
    raise DataError(
        f'Empty subset: fraction={fraction} of {num_episodes} episodes '
        f'selects none; raise `fraction`.')
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(num_episodes, size=k, replace=False))


def _check_fraction(fraction: float):
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}')


def check_subset(fraction: float, mode: str):
  """ValueError naming `fraction` (not in (0, 1]) or `mode` (unknown)."""
  _check_fraction(fraction)
  if mode not in SUBSET_MODES:
    raise ValueError(f'mode must be one of {SUBSET_MODES}, got {mode!r}')


def _storage_limit(capacity: int, add_count: int, fraction: float) -> int:
  valid = min(capacity, add_count)
  return int(round(fraction * valid))


def read_selection(replay_dir: str,
                   checkpoints: Optional[Sequence[int]] = None,
                   fraction: float = 1.0,
                   mode: str = 'uniform',
                   seed: int = 0,
                   stack_size: int = DEFAULT_STACK_SIZE,
                   frame_shape: Sequence[int] = DEFAULT_FRAME_SHAPE,
                   ) -> List[Tuple[CheckpointInfo, List[EpisodeInfo]]]:
  """Chooses the episodes of a subset, reading metadata only.

  Args:
    replay_dir: a `.../replay_logs` directory.
    checkpoints: suffixes to read; None = every complete checkpoint.
    fraction: share of the data kept, in (0, 1].
    mode: 'uniform' = `round(fraction * E)` episodes drawn uniformly at random
      (seeded) among the E episodes of all the checkpoints (the paper's 5%
      subsets); 'first' = the first `fraction` of the storage indices of every
      checkpoint, as Dopamine's loader does with a smaller `replay_capacity`
      (episodes crossing the limit are cut).
    seed: seed of the 'uniform' draw.
    stack_size: the stack size the files were recorded with.
    frame_shape: expected frame shape.

  Returns:
    `(checkpoint info, selected episodes)` per checkpoint, in suffix order.

  Raises:
    DataError: bad files (see `read_checkpoint_info`) or an empty subset.
  """
  check_subset(fraction, mode)
  if checkpoints is None:
    checkpoints = list_checkpoints(replay_dir)
  elif not os.path.isdir(replay_dir):
    raise FileNotFoundError(f'Dopamine replay directory not found: {replay_dir}')
  if not checkpoints:
    raise DataError(f'No checkpoints selected in {replay_dir}')
  checkpoints = sorted(int(c) for c in checkpoints)
  infos = [read_checkpoint_info(replay_dir, c, stack_size, frame_shape)
           for c in checkpoints]
  if mode == 'uniform':
    flat = [(i, e) for i, info in enumerate(infos) for e in info.episodes]
    chosen = select_uniform(len(flat), fraction, seed)
    per_ckpt: List[List[EpisodeInfo]] = [[] for _ in infos]
    for pos in chosen:
      i, e = flat[pos]
      per_ckpt[i].append(e)
    return list(zip(infos, per_ckpt))
  out = []
  for info in infos:
    if fraction < 1.0:
      limit = _storage_limit(info.capacity, info.add_count, fraction)
      info = read_checkpoint_info(replay_dir, info.suffix, stack_size,
                                  frame_shape, storage_limit=limit)
    out.append((info, list(info.episodes)))
  if not any(eps for _, eps in out):
    raise DataError(f'Empty subset: mode=first fraction={fraction} keeps no '
                    f'step of {replay_dir}')
  return out


def _sampleable(info: CheckpointInfo, episode: EpisodeInfo,
                stack_size: int) -> np.ndarray:
  idx = episode.indices()
  mask = ~np.isin(idx, info.invalid_range)
  if episode.headless:
    mask[:stack_size - 1] = False
  return mask


def load_episodes(info: CheckpointInfo,
                  episodes: Sequence[EpisodeInfo],
                  stack_size: int = DEFAULT_STACK_SIZE) -> Iterator[Episode]:
  """Reads the data of `episodes` of one checkpoint, streaming its frames.

  The observation gzip is decompressed once; only the frames of `episodes`
  are kept. Episodes are yielded in storage order (an episode that wraps
  around the end of the buffer comes last).

  Yields:
    `Episode`s with `sampleable` set from `invalid_range` and `headless`.
  """
  if not episodes:
    return
  action = NpyGzFile(info.filename(STORE_PREFIX + 'action')).read()
  reward = NpyGzFile(info.filename(STORE_PREFIX + 'reward')).read()
  obs_file = NpyGzFile(info.filename(STORE_PREFIX + 'observation'))
  # Every storage range needed, sorted; episodes complete when all theirs are.
  wanted = sorted({seg for e in episodes for seg in e.segments})
  pending = {e.episode_id: e for e in episodes}
  by_segment: Dict[Tuple[int, int], List[int]] = {}
  for e in episodes:
    for seg in e.segments:
      by_segment.setdefault(seg, []).append(e.episode_id)
  got: Dict[Tuple[int, int], np.ndarray] = {}
  for seg, frames in zip(wanted, obs_file.read_ranges(wanted)):
    got[seg] = frames
    for eid in by_segment[seg]:
      e = pending.get(eid)
      if e is None or not all(s in got for s in e.segments):
        continue
      del pending[eid]
      idx = e.indices()
      yield Episode(
          observation=np.concatenate([got[s] for s in e.segments]),
          action=action[idx].astype(np.int64),
          reward=reward[idx].astype(np.float32),
          terminal=e.terminal,
          checkpoint_id=e.checkpoint_id,
          episode_id=e.episode_id,
          sampleable=_sampleable(info, e, stack_size),
          at_cursor=e.at_cursor)
      for s in e.segments:
        if all(s not in o.segments for o in pending.values()):
          got.pop(s, None)


def iterate_episodes(replay_dir: str,
                     checkpoints: Optional[Sequence[int]] = None,
                     fraction: float = 1.0,
                     mode: str = 'uniform',
                     seed: int = 0,
                     stack_size: int = DEFAULT_STACK_SIZE,
                     frame_shape: Sequence[int] = DEFAULT_FRAME_SHAPE,
                     prefetch_checkpoints: int = 1) -> Iterator[Episode]:
  """Episodes of a subset of a Dopamine run, one checkpoint at a time.

  Args:
    replay_dir: a `.../replay_logs` directory.
    checkpoints: suffixes to read; None = all complete checkpoints.
    fraction, mode, seed: the subset, see `read_selection`.
    stack_size: the stack size the files were recorded with.
    frame_shape: expected frame shape `[H, W]`.
    prefetch_checkpoints: checkpoints decompressed ahead in background
      threads (gzip releases the GIL); memory grows with it. 0 = none.

  Yields:
    `Episode`s, checkpoint by checkpoint (in storage order within one; sort
    by `(checkpoint_id, episode_id)` for chronological order).
  """
  selection = read_selection(replay_dir, checkpoints, fraction, mode, seed,
                             stack_size, frame_shape)
  selection = [(info, eps) for info, eps in selection if eps]
  if prefetch_checkpoints <= 0:
    for info, eps in selection:
      yield from load_episodes(info, eps, stack_size)
    return
  load = lambda item: list(load_episodes(item[0], item[1], stack_size))
  with concurrent.futures.ThreadPoolExecutor(prefetch_checkpoints) as pool:
    futures = []
    next_item = 0
    for _ in range(len(selection)):
      while next_item < len(selection) and len(futures) <= prefetch_checkpoints:
        futures.append(pool.submit(load, selection[next_item]))
        next_item += 1
      episodes = futures.pop(0).result()
      yield from episodes
      del episodes


# -------------------------------------------------------------------- writer
class DopamineReplayWriter:
  """A Dopamine `OutOfGraphReplayBuffer`, reduced to `add` and `save`.

  Writes files exactly like the published DQN-Replay dataset: per-index
  arrays of `capacity`, zero padding of `stack_size - 1` transitions before
  each episode, `add_count` and `invalid_range` (for `update_horizon`).

  Example:
    writer = DopamineReplayWriter(capacity=1_000_000)
    writer.add(frame, action, reward, terminal)  # frame uint8 [84, 84]
    writer.save(replay_dir, suffix=0)
  """

  def __init__(self,
               capacity: int,
               stack_size: int = DEFAULT_STACK_SIZE,
               update_horizon: int = 1,
               frame_shape: Sequence[int] = DEFAULT_FRAME_SHAPE):
    if capacity < stack_size + update_horizon:
      raise ValueError(f'capacity ({capacity}) must be >= stack_size + '
                       f'update_horizon ({stack_size + update_horizon})')
    self._capacity = int(capacity)
    self._stack_size = int(stack_size)
    self._update_horizon = int(update_horizon)
    self._frame_shape = tuple(frame_shape)
    # Zeros rather than Dopamine's np.empty: unwritten rows compress away.
    self._store = {
        'observation': np.zeros((capacity,) + self._frame_shape, np.uint8),
        'action': np.zeros((capacity,), np.int32),
        'reward': np.zeros((capacity,), np.float32),
        'terminal': np.zeros((capacity,), np.uint8),
    }
    self.add_count = 0

  @property
  def capacity(self) -> int:
    return self._capacity

  def cursor(self) -> int:
    return self.add_count % self._capacity

  def invalid_range(self) -> np.ndarray:
    """Dopamine's `invalid_range(cursor, capacity, stack, horizon)`."""
    c = self.cursor()
    return np.array([(c - self._update_horizon + i) % self._capacity
                     for i in range(self._stack_size + self._update_horizon)])

  def _add(self, observation, action, reward, terminal):
    c = self.cursor()
    self._store['observation'][c] = observation
    self._store['action'][c] = action
    self._store['reward'][c] = reward
    self._store['terminal'][c] = terminal
    self.add_count += 1

  def add(self, observation: np.ndarray, action: int, reward: float,
          terminal: bool):
    """Adds one transition, with padding first if an episode starts.

    Args:
      observation: uint8 `[H, W]`, the newest frame of the state.
      action: the action taken.
      reward: the raw reward received.
      terminal: whether the transition ended the episode.
    """
    observation = np.asarray(observation)
    if observation.shape != self._frame_shape:
      raise ValueError(f'observation has shape {observation.shape}, expected '
                       f'{self._frame_shape}')
    if self.add_count == 0 or self._store['terminal'][self.cursor() - 1] == 1:
      for _ in range(self._stack_size - 1):
        self._add(0, 0, 0.0, 0)
    self._add(observation, int(action), float(reward), 1 if terminal else 0)

  @property
  def stack_size(self) -> int:
    return self._stack_size

  @property
  def update_horizon(self) -> int:
    return self._update_horizon

  @property
  def frame_shape(self) -> Tuple[int, ...]:
    return self._frame_shape

  def checkpoint_arrays(self) -> Dict[str, np.ndarray]:
    """The 6 arrays of a checkpoint, by file name stem (views, not copies)."""
    arrays = {STORE_PREFIX + name: array for name, array in self._store.items()}
    arrays['add_count'] = np.array(self.add_count)
    arrays['invalid_range'] = self.invalid_range()
    return arrays

  def save(self, replay_dir: str, suffix: int, compresslevel: int = 6):
    """Writes the 6 files of checkpoint `suffix` as a plain Dopamine directory
    (no manifest; all files or none, see `write_checkpoint_files`).

    Raises:
      DataError: if `replay_dir` has a manifest: its checkpoints are written
        with `replay_writer.ReplayDirWriter`, which records them.
    """
    if os.path.exists(manifest_path(replay_dir)):
      raise DataError(
          f'{replay_dir} holds a dataset with a manifest; write its '
          'checkpoints with tf_offline_q.data.replay_writer.ReplayDirWriter')
    write_checkpoint_files(replay_dir, suffix, self.checkpoint_arrays(),
                           compresslevel)

  @classmethod
  def restore(cls, replay_dir: str, suffix: int,
              stack_size: int = DEFAULT_STACK_SIZE,
              update_horizon: int = 1) -> 'DopamineReplayWriter':
    """The buffer as checkpoint `suffix` saved it, to go on adding (Dopamine's
    `OutOfGraphReplayBuffer.load`). Reads all of its arrays into memory.

    Raises:
      DataError: naming a missing, truncated or inconsistent file.
    """
    info = read_checkpoint_info(replay_dir, suffix, stack_size,
                                frame_shape=NpyGzFile(checkpoint_filename(
                                    replay_dir, STORE_PREFIX + 'observation',
                                    suffix)).shape[1:])
    buffer = cls.__new__(cls)
    buffer._capacity = info.capacity
    buffer._stack_size = int(stack_size)
    buffer._update_horizon = int(update_horizon)
    buffer._store = {
        field: NpyGzFile(info.filename(STORE_PREFIX + field)).read()
        for field in STORE_FIELDS}
    buffer._frame_shape = tuple(buffer._store['observation'].shape[1:])
    buffer.add_count = info.add_count
    return buffer


def write_episodes_as_dopamine(episodes: Iterable[Tuple[np.ndarray, np.ndarray,
                                                        np.ndarray, bool]],
                               replay_dir: str,
                               capacity: int,
                               checkpoint_every: Optional[int] = None,
                               stack_size: int = DEFAULT_STACK_SIZE,
                               update_horizon: int = 1,
                               compresslevel: int = 6) -> List[int]:
  """Writes episodes `(frames [L,H,W], actions [L], rewards [L], terminal)`.

  A checkpoint is saved every `checkpoint_every` transitions (not counting
  padding; None = only at the end) and after the last one. Returns the saved
  suffixes. Used by tests and benchmarks to make data with known contents.
  """
  writer = None
  saved = []
  added = 0
  for frames, actions, rewards, terminal in episodes:
    if writer is None:
      writer = DopamineReplayWriter(capacity, stack_size, update_horizon,
                                    frames.shape[1:])
    for t in range(len(frames)):
      writer.add(frames[t], actions[t], rewards[t],
                 terminal and t == len(frames) - 1)
      added += 1
      if checkpoint_every and added % checkpoint_every == 0:
        writer.save(replay_dir, len(saved), compresslevel)
        saved.append(len(saved))
  if writer is None:
    raise ValueError('no episodes to write')
  if not checkpoint_every or added % checkpoint_every:
    writer.save(replay_dir, len(saved), compresslevel)
    saved.append(len(saved))
  return saved
