"""The run directory: one owner at a time, one configuration, intact checkpoints.

`train_eval` calls these before it trains, so a run directory cannot be mixed,
silently reconfigured or restarted from scratch:

  lock        `RUN/run.lock` ({"pid", "hostname", "started", ...}) is created
              atomically while a process owns the directory; a second process
              fails at once naming the owner. A lock left by a dead process on
              this host is taken over, saying so. A lock from another host is
              never taken over (its process cannot be checked): delete the file
              if that process is gone.
  config      `RUN/run_config.json` records the settings that shape the run
              (`FIXED_SETTINGS` and the agent's hyperparameters) when the run
              starts; a resume with a different one fails listing every
              differing setting (old vs new). Every other setting (budgets,
              intervals, `reverb_addresses`, `jit_compile`, `method`, ...) may
              change on resume; changes are printed and appended to the record's
              "resumes" list. `data_source` may be left unset on resume (the
              Reverb table is restored from its checkpoint); a different one is
              an error.
  operative   `RUN/operative_config.gin` is the first start's gin configuration
              and is never overwritten; a resume writes its own beside it as
              `operative_config.resume-STEP.gin`.
  checkpoints before the Learner restores `RUN/train/checkpoints`, every
              checkpoint on disk is listed (the `checkpoint` state file may be
              missing or name a checkpoint that is gone), the newest is read in
              full (index, data shards, checksums), and a damaged one is named,
              moved to `train/damaged_checkpoints/` and the previous intact one
              is used; the state file is rewritten to name what is restored. If
              checkpoints exist and none is intact, the run fails instead of
              restarting from step 0.
"""
import datetime
import inspect
import json
import os
import re
import socket
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import tensorflow as tf

from tf_offline_q import files

LOCK_FILE = 'run.lock'
CONFIG_FILE = 'run_config.json'
OPERATIVE_CONFIG_FILE = 'operative_config.gin'
DAMAGED_DIR = 'damaged_checkpoints'

# train_eval's arguments that shape the run: fixed for the life of a run directory.
# Every other argument may change when a run is resumed.
FIXED_SETTINGS = ('game', 'games', 'game_weights', 'init_checkpoint', 'agent_type', 'backbone',
                  'variant', 'aggregation', 'feature_normalization', 'n_step',
                  'full_action_space', 'data_action_set', 'data_source', 'fraction', 'subset_mode', 'data_seed',
                  'batch_size', 'seed', 'eval_epsilon', 'sticky_action_prob',
                  'max_episode_frames')
# Agent constructor arguments that do not shape training (the acting policies'
# epsilons, the name scope); all the agent's other hyperparameters are fixed.
ADJUSTABLE_AGENT_ARGS = ('epsilon_greedy', 'eval_epsilon', 'name')


class RunDirError(ValueError):
  """A run directory that cannot be used as asked (the message says why and what to do)."""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


# -------------------------------------------------------------------- lock
def _process_start_ticks(pid: int) -> Optional[int]:
  """The process's start time in clock ticks since boot (Linux), or None."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      stat = f.read()
  except OSError:
    return None
  # Field 22; the command name (field 2) may hold spaces, so split after ')'.
  fields = stat.rpartition(')')[2].split()
  try:
    return int(fields[19])
  except (IndexError, ValueError):
    return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True      # Alive, owned by another user.
  return True


class RunLock:
  """`RUN/run.lock` held while this process owns the run directory.

  Example:
    with RunLock(run_dir):
      ...   # train
  """

  def __init__(self, run_dir: str):
    self.path = os.path.join(run_dir, LOCK_FILE)
    self._held = False
    # Locks need a local file system (link, pid checks); remote run
    # directories (gs://...) are not locked.
    self.local = '://' not in run_dir

  def _owner_info(self) -> Dict[str, Any]:
    pid = os.getpid()
    return {'pid': pid, 'hostname': socket.gethostname(), 'started': _now(),
            'pid_start_ticks': _process_start_ticks(pid)}

  def _read(self) -> Optional[Dict[str, Any]]:
    try:
      with open(self.path) as f:
        info = json.load(f)
      return info if isinstance(info, dict) else None
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}     # Unreadable: treated as held by an unknown owner.

  def _is_stale(self, info: Mapping[str, Any]) -> bool:
    """True when the owner is a process of this host that no longer runs."""
    pid = info.get('pid')
    if info.get('hostname') != socket.gethostname() or not isinstance(pid, int):
      return False
    if not _pid_alive(pid):
      return True
    # The pid is alive: the same process only if it started when the lock says.
    recorded, current = info.get('pid_start_ticks'), _process_start_ticks(pid)
    return recorded is not None and current is not None and recorded != current

  def acquire(self) -> 'RunLock':
    """Takes the lock, or raises RunDirError naming the directory and its owner."""
    if not self.local:
      return self
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    text = json.dumps(self._owner_info())
    for _ in range(3):
      # Written in full under a temporary name, then linked into place: link()
      # fails if the lock exists (like O_EXCL) and the lock is never half-written.
      tmp = f'{self.path}.{os.getpid()}.tmp'
      with open(tmp, 'w') as f:
        f.write(text)
      try:
        os.link(tmp, self.path)
        self._held = True
        return self
      except FileExistsError:
        pass
      finally:
        os.remove(tmp)
      info = self._read()
      if info is None:
        continue       # Released meanwhile: try again.
      if not self._is_stale(info):
        run_dir = os.path.dirname(self.path)
        owner = (f'process {info.get("pid")} on {info.get("hostname")} (started '
                 f'{info.get("started")})' if info else 'an unknown process (unreadable lock)')
        raise RunDirError(
            f'Run directory {run_dir} is in use by {owner}: {self.path} exists. Wait for that '
            'process to finish or stop it, or use another root_dir; delete the lock file only '
            'if that process is gone.')
      print(f'Taking over the stale lock {self.path} of process {info["pid"]} on '
            f'{info["hostname"]} (started {info.get("started")}), which no longer runs.',
            flush=True)
      # Moved aside (atomic) rather than deleted; if another process took the
      # stale lock over meanwhile, what was moved is its new lock: put back.
      moved = f'{self.path}.stale.{os.getpid()}'
      try:
        os.replace(self.path, moved)
      except FileNotFoundError:
        continue
      try:
        with open(moved) as f:
          moved_info = json.load(f)
      except (OSError, ValueError):
        moved_info = {}
      if moved_info != info:
        try:
          os.link(moved, self.path)
        except FileExistsError:
          pass
      os.remove(moved)
    raise RunDirError(f'Could not take the lock {self.path}: it keeps changing owner')

  def release(self) -> None:
    if self._held:
      info = self._read()
      if info and info.get('pid') == os.getpid():
        os.remove(self.path)
      self._held = False

  def __enter__(self) -> 'RunLock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


# ----------------------------------------------------------------- config
def normalize_data_source(source: Optional[str]) -> Optional[str]:
  """'dopamine:PATH' / 'tfds:DIR:NAME' with the path made absolute (None stays None)."""
  if not source:
    return None
  kind, sep, rest = source.partition(':')
  if kind == 'dopamine' and sep and rest:
    path, at, checkpoints = rest.partition('@')
    return f'dopamine:{os.path.abspath(path)}{at}{checkpoints}'
  if kind == 'tfds' and sep and rest:
    data_dir, sep2, name = rest.rpartition(':')
    if sep2 and data_dir:
      return f'tfds:{os.path.abspath(data_dir)}:{name}'
  return source


def _jsonable(value: Any) -> Any:
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  return repr(value)


def agent_hyperparameters(agent_class: Callable, gin_bindings: Mapping[str, Any],
                          passed: Iterable[str]) -> Dict[str, Any]:
  """The agent's effective constructor hyperparameters that shape training.

  Args:
    agent_class: the agent class (its signature's defaults are the base).
    gin_bindings: its gin bindings (`gin.get_bindings(agent_class)`).
    passed: arguments `train_eval` passes itself (specs, network, n_step, ...).
  Returns:
    {name: value} (JSON-able) over the arguments not in `passed` nor in
    `ADJUSTABLE_AGENT_ARGS`.
  """
  skip = set(passed) | set(ADJUSTABLE_AGENT_ARGS) | {'self'}
  values = {}
  for name, param in inspect.signature(agent_class.__init__).parameters.items():
    if name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
      continue
    value = gin_bindings.get(name, param.default)
    values[name] = None if value is inspect.Parameter.empty else _jsonable(value)
  return values


def _differs(old: Any, new: Any) -> bool:
  return _jsonable(old) != _jsonable(new)


def _format(value: Any) -> str:
  return json.dumps(_jsonable(value))


def _read_json(path: str) -> Dict[str, Any]:
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise RunDirError(f'{path} is unreadable ({e}); restore it from a backup or start a new '
                      'root_dir') from e
  if not isinstance(record, dict) or not isinstance(record.get('fixed'), dict):
    raise RunDirError(f'{path} does not hold a run configuration record ("fixed" missing)')
  return record


def check_and_record_config(run_dir: str, fixed: Mapping[str, Any],
                            adjustable: Mapping[str, Any], start_step: Optional[int],
                            table_restored: bool) -> List[str]:
  """Compares this start's settings with `RUN/run_config.json`; records them.

  A start resumes a run when it restores a training checkpoint or a Reverb
  table; only then are the settings compared (a first start that failed
  before either existed leaves nothing to be consistent with).

  Args:
    run_dir: the run directory.
    fixed: settings that may not change (`FIXED_SETTINGS` values and
      'AgentClass.NAME' hyperparameters); `data_source` normalised.
    adjustable: settings that may change on resume.
    start_step: the step of the checkpoint restored; None if there is none.
    table_restored: the Reverb table came back from its checkpoint.
  Returns:
    The printed lines describing allowed changes (empty for a new run).
  Raises:
    RunDirError: listing every fixed setting that differs (old vs new).
  """
  path = os.path.join(run_dir, CONFIG_FILE)
  fixed = {k: _jsonable(v) for k, v in fixed.items()}
  adjustable = {k: _jsonable(v) for k, v in adjustable.items()}
  resuming = start_step is not None or table_restored
  if not os.path.exists(path) or not resuming:
    if resuming:
      print(f'{path} does not exist (a run started before settings were recorded): recording '
            'the current settings; they cannot be checked against the earlier ones.', flush=True)
    files.atomic_write_text(path, json.dumps(
        {'created': _now(), 'fixed': fixed, 'adjustable': adjustable, 'resumes': []},
        indent=1, sort_keys=True) + '\n')
    return []
  record = _read_json(path)
  old_fixed = record['fixed']
  conflicts = []
  for name in sorted(set(old_fixed) | set(fixed)):
    if name not in fixed or name not in old_fixed:
      continue                 # Recorded by another version of the code.
    old, new = old_fixed[name], fixed[name]
    if name == 'data_source' and (new is None or old is None):
      # Unset: the restored table is used (or the fill says it is unset).
      if new is None and old is not None and table_restored:
        print(f'data_source not given: using the Reverb table restored from the run '
              f'(loaded from {old}).', flush=True)
      continue
    if _differs(old, new):
      conflicts.append(f'  {name}: {_format(old)} (recorded) vs {_format(new)} (now)')
  if conflicts:
    raise RunDirError(
        f'{run_dir} was started with other settings (recorded in {path}); a run directory '
        'keeps the settings that shape its run. Differing settings:\n' + '\n'.join(conflicts) +
        '\nResume with the recorded settings, or give a new root_dir for a new run.')
  merged_fixed = dict(old_fixed)
  merged_fixed.update({k: v for k, v in fixed.items()
                       if k not in old_fixed or (v is not None and old_fixed[k] is None)})
  old_adjustable = record.get('adjustable', {})
  changes = {name: [old_adjustable.get(name), value] for name, value in adjustable.items()
             if name in old_adjustable and _differs(old_adjustable[name], value)}
  lines = [f'Setting changed on resume: {name} {_format(old)} -> {_format(new)}'
           for name, (old, new) in sorted(changes.items())]
  for line in lines:
    print(line, flush=True)
  record['fixed'] = merged_fixed
  record['adjustable'] = adjustable
  record.setdefault('resumes', []).append({'time': _now(), 'step': start_step or 0,
                                           'changed': changes})
  files.atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + '\n')
  return lines


def write_operative_config(run_dir: str, text: str, start_step: Optional[int]) -> str:
  """Writes the gin operative config: `operative_config.gin` at the first start
  (`start_step` None: no checkpoint), `operative_config.resume-STEP.gin` at a
  resume; the first start's file is never overwritten by a resume."""
  path = os.path.join(run_dir, OPERATIVE_CONFIG_FILE)
  if start_step is not None and os.path.exists(path):
    path = os.path.join(run_dir, f'operative_config.resume-{int(start_step)}.gin')
  files.atomic_write_text(path, text)
  return path


# ------------------------------------------------------------ checkpoints
_CKPT_RE = re.compile(r'^ckpt-(\d+)(\.index|\.data-\d{5}-of-\d{5})$')


def _checkpoint_files(checkpoint_dir: str) -> Dict[int, List[str]]:
  """{N: [file names of ckpt-N]} over the files in `checkpoint_dir`."""
  found = {}
  for name in tf.io.gfile.listdir(checkpoint_dir):
    match = _CKPT_RE.match(name)
    if match:
      found.setdefault(int(match.group(1)), []).append(name)
  return found


def _state_file_names(checkpoint_dir: str) -> List[int]:
  """Checkpoint numbers named by the `checkpoint` state file (may be absent)."""
  path = os.path.join(checkpoint_dir, 'checkpoint')
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  return [int(n) for n in re.findall(r'ckpt-(\d+)"', text)]


def checkpoint_damage(prefix: str) -> Optional[str]:
  """None if the checkpoint at `prefix` reads in full, else what is damaged.

  Reads the index and every tensor (the data shards' checksums are verified),
  so a deleted, truncated or corrupted file is found before a restore.
  """
  index = prefix + '.index'
  if not tf.io.gfile.exists(index):
    return f'{index} is missing'
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError, IndexError) as e:
    return f'{index} is unreadable ({_first_line(e)})'
  try:
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except (tf.errors.OpError, ValueError, IndexError) as e:
    shards = sorted(tf.io.gfile.glob(prefix + '.data-*'))
    expected = re.findall(r'of-(\d{5})', ' '.join(shards))
    missing = []
    if expected:
      count = int(expected[0])
      missing = [f'{prefix}.data-{i:05d}-of-{count:05d}' for i in range(count)
                 if not tf.io.gfile.exists(f'{prefix}.data-{i:05d}-of-{count:05d}')]
    if missing or not shards:
      what = ', '.join(missing) or f'{prefix}.data-00000-of-00001'
      return f'{what} is missing'
    return (f'{", ".join(shards)} is truncated or corrupted (reading it failed: '
            f'{_first_line(e)})')
  return None


def _first_line(error: Exception) -> str:
  text = getattr(error, 'message', None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0][:300]


def _write_state_file(checkpoint_dir: str, numbers: Sequence[int]) -> None:
  lines = [f'model_checkpoint_path: "ckpt-{numbers[-1]}"']
  lines += [f'all_model_checkpoint_paths: "ckpt-{n}"' for n in numbers]
  files.atomic_write_text(os.path.join(checkpoint_dir, 'checkpoint'), '\n'.join(lines) + '\n')


def recover_checkpoints(checkpoint_dir: str) -> Optional[int]:
  """Makes the checkpoint state file name the newest intact checkpoint.

  Lists the checkpoints on disk and in the state file, checks the newest in
  full, moves damaged ones to `../damaged_checkpoints/` (saying which file is
  damaged), and rewrites the state file when it is missing or names another
  checkpoint. Call before the Learner restores.

  Returns:
    The step of the checkpoint the Learner will restore; None if there is none.
  Raises:
    RunDirError: checkpoints exist but none is intact.
  """
  if not tf.io.gfile.isdir(checkpoint_dir):
    return None
  on_disk = _checkpoint_files(checkpoint_dir)
  in_state = _state_file_names(checkpoint_dir)
  numbers = sorted(set(on_disk) | set(in_state))
  if not numbers:
    return None
  damaged = []
  chosen = None
  for number in reversed(numbers):
    prefix = os.path.join(checkpoint_dir, f'ckpt-{number}')
    problem = checkpoint_damage(prefix)
    if problem is None:
      chosen = number
      break
    damaged.append((number, problem))
  damaged_dir = os.path.join(os.path.dirname(checkpoint_dir.rstrip('/')), DAMAGED_DIR)
  for number, problem in damaged:
    names = on_disk.get(number, [])
    print(f'Checkpoint ckpt-{number} in {checkpoint_dir} is damaged: {problem}.' +
          (f' Moved its files to {damaged_dir}.' if names else ''), flush=True)
    if names:
      tf.io.gfile.makedirs(damaged_dir)
      for name in names:
        tf.io.gfile.rename(os.path.join(checkpoint_dir, name), os.path.join(damaged_dir, name),
                           overwrite=True)
  if chosen is None:
    raise RunDirError(
        f'No intact checkpoint in {checkpoint_dir} (every one is damaged, see above); the run '
        'cannot resume. Restore the checkpoints from a backup, or start a new root_dir.')
  # Older checkpoints are only listed (not read in full): they are the
  # fallbacks of a later start; the Learner deletes them as it saves.
  intact = [n for n in numbers if n < chosen and f'ckpt-{n}.index' in on_disk.get(n, [])]
  intact.append(chosen)
  if damaged or in_state != intact:
    if not in_state:
      print(f'{checkpoint_dir}/checkpoint is missing: resuming from the newest checkpoint on '
            f'disk, ckpt-{chosen}.', flush=True)
    elif damaged:
      print(f'Falling back to ckpt-{chosen}, the newest intact checkpoint.', flush=True)
    _write_state_file(checkpoint_dir, intact)
  return chosen
