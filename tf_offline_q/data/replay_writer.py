"""Writes one run's Dopamine checkpoints into a dataset directory, never mixed.

A dataset directory (`{root}/{GAME}/{RUN}/replay_logs`) is written by one run
at a time and belongs to it: `manifest.json` names the run (`run_id`) and
records, per checkpoint, the run that wrote it and the size and CRC-32 of each
file. `dqn_replay` reads only the checkpoints the manifest lists and checks
every file against it, so a directory never silently mixes two runs.

Writing a checkpoint: its files are written to hidden temporaries and renamed
into place (`dqn_replay.write_checkpoint_files`), then the manifest is
rewritten atomically to list it. A kill at any point leaves the dataset as it
was after the previous checkpoint (plus files the manifest does not list,
which readers ignore and the next `resume` deletes).

  # A new dataset (fails if the directory holds one, unless overwrite=True,
  # which deletes the old dataset first: wholesale, never mixed).
  with ReplayDirWriter.create(replay_dir, metadata={'game': 'Pong'}) as out:
    buffer = dqn_replay.DopamineReplayWriter(capacity=1_000_000)
    for iteration in range(50):
      ...  # buffer.add(frame, action, reward, terminal)
      out.write_checkpoint(iteration, buffer)
    run_id = out.run_id      # keep it with the run's own state
    out.finish()             # all written (readers warn about unfinished runs)

  # After a restart: the same run goes on (checks the directory still holds
  # run `run_id`; deletes what an interrupted write left).
  with ReplayDirWriter.resume(replay_dir, run_id=run_id) as out:
    last = out.checkpoints[-1]
    buffer = out.restore_buffer(last)   # the circular buffer as saved
    out.write_checkpoint(last + 1, buffer)

One writer at a time: the writer holds an exclusive `flock` on the directory
(released when it closes or its process dies); a second one fails clearly.
"""
import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import uuid
from typing import Dict, List, Optional

from tf_offline_q import files
from tf_offline_q.data import dqn_replay

DataError = dqn_replay.DataError

_REPLACED_MARK = '.replaced-'


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')


def describe_dataset(replay_dir: str) -> Optional[str]:
  """What `replay_dir` holds ('run R, checkpoints [...]' or 'Dopamine
  checkpoints [...] without a manifest'), or None if it holds no dataset."""
  if not os.path.isdir(replay_dir):
    return None
  try:
    manifest = dqn_replay.read_manifest(replay_dir)
  except DataError as e:
    return f'files and a manifest that does not read: {e}'
  if manifest is not None:
    return (f'run {manifest["run_id"]}, checkpoints '
            f'{dqn_replay.manifest_checkpoints(manifest)}'
            f'{"" if manifest.get("finished") else ", unfinished"}')
  found = dqn_replay.checkpoint_files_on_disk(replay_dir)
  if found:
    return f'Dopamine checkpoints {sorted(found)} without a manifest'
  return None


def _lock_dir(replay_dir: str) -> int:
  """An exclusive non-blocking flock on the directory itself; returns its fd."""
  fd = os.open(replay_dir, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise DataError(f'Another process is writing the dataset in '
                      f'{replay_dir}; wait for it to finish or stop it') from e
    raise
  return fd


def _remove_leftovers(replay_dir: str, committed: List[int]):
  """Deletes temporaries and the files of checkpoints the manifest does not
  list (an interrupted write); call with the directory locked."""
  stray = set(dqn_replay.checkpoint_files_on_disk(replay_dir)) - set(committed)
  for fname in os.listdir(replay_dir):
    match = dqn_replay._CKPT_RE.match(fname)  # pylint: disable=protected-access
    if dqn_replay.is_temporary_file(fname) or (
        match and int(match['suffix']) in stray):
      logging.info('Removing %s (left by an interrupted write)', fname)
      os.remove(os.path.join(replay_dir, fname))


def _remove_replaced_siblings(replay_dir: str):
  """Deletes what an interrupted `overwrite` left beside `replay_dir`."""
  parent, name = os.path.split(os.path.abspath(replay_dir))
  if not os.path.isdir(parent):
    return
  for sibling in os.listdir(parent):
    if sibling.startswith(f'.{name}{_REPLACED_MARK}'):
      shutil.rmtree(os.path.join(parent, sibling), ignore_errors=True)


class ReplayDirWriter:
  """One run's writer of a Dopamine dataset directory with a manifest.

  Make one with `create` (a new run) or `resume` (the same run, after a
  restart); see the module docstring. Use as a context manager, or `close()`.

  Attributes:
    replay_dir: the directory.
    run_id: the run's id (a hex string), recorded in the manifest.
    metadata: the free-form dict given to `create` (e.g. game, seed, flags).
    checkpoints: sorted suffixes of the checkpoints written so far (complete).
  """

  def __init__(self, replay_dir: str, manifest: dict, lock_fd: int):
    """Use `create` or `resume`."""
    self._replay_dir = replay_dir
    self._manifest = manifest
    self._lock_fd = lock_fd

  # ---------------------------------------------------------------- opening
  @classmethod
  def create(cls, replay_dir: str, metadata: Optional[Dict] = None,
             overwrite: bool = False,
             run_id: Optional[str] = None) -> 'ReplayDirWriter':
    """Starts a new dataset (a new run) in `replay_dir`.

    Args:
      replay_dir: the dataset directory (created if needed).
      metadata: JSON-serialisable facts about the run, kept in the manifest.
      overwrite: if `replay_dir` holds a dataset (with or without a
        manifest), delete it first. The old directory is renamed away in one
        step, then deleted, so it is never mixed with the new one.
      run_id: the new run's id (default: a random one).

    Raises:
      DataError: if `replay_dir` holds a dataset and not `overwrite` (naming
        what it holds), or another process writes it.
    """
    replay_dir = os.path.abspath(replay_dir)
    _remove_replaced_siblings(replay_dir)
    run_id = run_id or uuid.uuid4().hex
    held = describe_dataset(replay_dir)
    if held is not None:
      if not overwrite:
        raise DataError(
            f'{replay_dir} already holds a dataset ({held}); pass --overwrite '
            '(overwrite=True) to replace it, or write to another directory '
            '(--root_dir or --run)')
      fd = _lock_dir(replay_dir)
      try:
        parent, name = os.path.split(replay_dir)
        replaced = os.path.join(parent, f'.{name}{_REPLACED_MARK}{run_id}')
        os.rename(replay_dir, replaced)
      finally:
        os.close(fd)
      shutil.rmtree(replaced, ignore_errors=True)
      logging.info('Deleted the dataset in %s (%s)', replay_dir, held)
    os.makedirs(replay_dir, exist_ok=True)
    fd = _lock_dir(replay_dir)
    try:
      _remove_leftovers(replay_dir, [])
      manifest = {
          'format': dqn_replay.MANIFEST_FORMAT,
          'version': dqn_replay.MANIFEST_VERSION,
          'run_id': run_id,
          'created': _now(),
          'metadata': dict(metadata or {}),
          'checkpoints': {},
      }
      writer = cls(replay_dir, manifest, fd)
      writer._commit()
    except BaseException:
      os.close(fd)
      raise
    return writer

  @classmethod
  def resume(cls, replay_dir: str,
             run_id: Optional[str] = None) -> 'ReplayDirWriter':
    """Reopens a dataset to append more checkpoints of the same run.

    Deletes temporaries and files of checkpoints the manifest does not list
    (left by an interrupted write), and checks the sizes of the listed files.

    Args:
      replay_dir: a directory written by `create`.
      run_id: if given, the run the directory must hold (the id the caller
        kept from `create`), so a dataset replaced meanwhile is not appended to.

    Raises:
      DataError: no manifest (nothing of ours to resume), another run's
        dataset, a listed file missing or of the wrong size, or another
        process writes it.
    """
    replay_dir = os.path.abspath(replay_dir)
    if not os.path.isdir(replay_dir):
      raise DataError(f'Cannot resume writing {replay_dir}: it does not exist')
    fd = _lock_dir(replay_dir)
    try:
      manifest = dqn_replay.read_manifest(replay_dir)
      if manifest is None:
        held = describe_dataset(replay_dir) or 'nothing'
        raise DataError(
            f'Cannot resume writing {replay_dir}: it has no '
            f'{dqn_replay.MANIFEST_NAME} (it holds {held}); start a new '
            'dataset (overwrite) instead')
      if run_id is not None and manifest['run_id'] != run_id:
        raise DataError(
            f'{replay_dir} holds run {manifest["run_id"]}, not run {run_id} '
            'that is resuming (it was overwritten by another run?); write this '
            'run elsewhere or start it again')
      committed = dqn_replay.manifest_checkpoints(manifest)
      _remove_leftovers(replay_dir, committed)
      manifest.pop('finished', None)  # Writing again.
      for suffix in committed:
        for fname, record in manifest['checkpoints'][str(suffix)][
            'files'].items():
          path = os.path.join(replay_dir, fname)
          size = os.path.getsize(path) if os.path.exists(path) else None
          if size != record['size']:
            raise DataError(
                f'{path} of checkpoint {suffix} is '
                f'{"missing" if size is None else f"{size} bytes"}, run '
                f'{manifest["run_id"]} wrote {record["size"]}: the dataset is '
                'damaged; start it again (overwrite)')
    except BaseException:
      os.close(fd)
      raise
    return cls(replay_dir, manifest, fd)

  # ------------------------------------------------------------- properties
  @property
  def replay_dir(self) -> str:
    return self._replay_dir

  @property
  def run_id(self) -> str:
    return self._manifest['run_id']

  @property
  def metadata(self) -> Dict:
    return dict(self._manifest['metadata'])

  @property
  def checkpoints(self) -> List[int]:
    return dqn_replay.manifest_checkpoints(self._manifest)

  # ---------------------------------------------------------------- writing
  def _check_open(self):
    if self._lock_fd is None:
      raise RuntimeError(f'ReplayDirWriter of {self._replay_dir} is closed')

  def _commit(self):
    files.atomic_write_text(
        dqn_replay.manifest_path(self._replay_dir),
        json.dumps(self._manifest, indent=1, sort_keys=True) + '\n')

  def write_checkpoint(self, suffix: int,
                       buffer: dqn_replay.DopamineReplayWriter,
                       compresslevel: int = 6, replace: bool = False):
    """Writes `buffer` as checkpoint `suffix` and records it in the manifest.

    Args:
      suffix: the checkpoint number `N` (Dopamine: the iteration).
      buffer: the circular buffer to save.
      compresslevel: gzip level.
      replace: allow writing a suffix already written by this run (e.g. an
        iteration played again after a restart); it is unlisted first, so it
        is never half old, half new.

    Raises:
      DataError: `suffix` already written and not `replace`.
    """
    self._check_open()
    suffix = int(suffix)
    if suffix < 0:
      raise ValueError(f'checkpoint suffix must be >= 0, got {suffix}')
    key = str(suffix)
    if key in self._manifest['checkpoints']:
      if not replace:
        raise DataError(
            f'Checkpoint {suffix} of {self._replay_dir} is already written '
            f'by this run ({self.run_id}); pass replace=True to write it again')
      del self._manifest['checkpoints'][key]
      self._commit()
    records = dqn_replay.write_checkpoint_files(
        self._replay_dir, suffix, buffer.checkpoint_arrays(), compresslevel)
    self._manifest['checkpoints'][key] = {
        'run_id': self.run_id,
        'written': _now(),
        'add_count': int(buffer.add_count),
        'capacity': int(buffer.capacity),
        'stack_size': int(buffer.stack_size),
        'update_horizon': int(buffer.update_horizon),
        'frame_shape': list(buffer.frame_shape),
        'files': records,
    }
    self._commit()

  def restore_buffer(self, suffix: Optional[int] = None
                     ) -> dqn_replay.DopamineReplayWriter:
    """The circular buffer as checkpoint `suffix` (default: the last) holds
    it, verified against the manifest, to go on adding to it."""
    self._check_open()
    if suffix is None:
      if not self.checkpoints:
        raise DataError(f'{self._replay_dir} has no checkpoint to restore yet')
      suffix = self.checkpoints[-1]
    dqn_replay.verify_checkpoint(self._replay_dir, suffix, self._manifest)
    entry = self._manifest['checkpoints'][str(int(suffix))]
    return dqn_replay.DopamineReplayWriter.restore(
        self._replay_dir, suffix, entry['stack_size'], entry['update_horizon'])

  def finish(self):
    """Records in the manifest that the run wrote all it meant to (readers
    warn about a dataset whose run has not finished); then `close()`."""
    self._check_open()
    self._manifest['finished'] = _now()
    self._commit()
    self.close()

  @property
  def finished(self) -> bool:
    return bool(self._manifest.get('finished'))

  def close(self):
    """Releases the directory (the manifest is always up to date)."""
    if self._lock_fd is not None:
      os.close(self._lock_fd)
      self._lock_fd = None

  def __enter__(self) -> 'ReplayDirWriter':
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass  # At interpreter exit; the lock goes with the process anyway.
