"""Continuous-control datasets: Minari's on-disk format, and D4RL HDF5 files.

On-disk format: Minari's (0.5.3), written with Minari's own API
(`minari.create_dataset_from_buffers`) and read with `minari.MinariDataset`:

  ROOT/NAMESPACE/NAME-vN/data/main_data.hdf5   episodes
  ROOT/NAMESPACE/NAME-vN/data/metadata.json    spaces, env spec, ref scores, ...

Nothing is ever downloaded, and `~/.minari` / `MINARI_DATASETS_PATH` are not
used: every function takes the dataset root explicitly (Minari's creation
function only knows that variable, so `write_minari_dataset` points it at a
private staging directory for the duration of the call, under a lock).

Episodes are `ContinuousEpisode`s: T steps, T + 1 observations (the last is
the observation after the last action). Observations are flattened as the
environments flatten them (`tf_offline_q.envs.continuous`: dict observations
as `concat(observation, desired_goal)`), so a Minari dataset with dict
observations made elsewhere (e.g. Minari's own pointmaze datasets) reads into
the same layout.

Metadata (the dict both loaders return):

  dataset_id     e.g. 'pointmaze/umaze-v0' (D4RL: the file path)
  env_name       canonical environment name, e.g. 'PointMaze_UMaze-v3' (or None)
  ref_min_score  mean return of a random policy (D4RL normalisation 0), or None
  ref_max_score  mean return of the expert / scripted policy (100), or None
  obs_dim, act_dim, num_episodes, num_steps
  minari         the raw Minari metadata (Minari datasets only)

Our datasets also store 'env_name' (and anything passed as `extra_metadata`)
in Minari's metadata.json.

Sources (`parse_source`, `load_source`), as on the Atari path:

  minari:ROOT:DATASET_ID    e.g. minari:/data/minari:pointmaze/umaze-v0
  d4rl:PATH                 a D4RL HDF5 file, e.g. d4rl:/data/hopper_medium-v2.hdf5

Bad input raises an error naming the dataset and the field: a missing path
(`FileNotFoundError`), observation / action dimensions that do not match the
environment, NaN or infinite values, actions outside [-1, 1], inconsistent
episode lengths (`ValueError`).
"""
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile
import threading
import warnings
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from tf_offline_q.envs import continuous

# Actions may exceed [-1, 1] by this much (float rounding) before it is an error.
ACTION_TOLERANCE = 1e-5

MINARI_DATA_DIR = 'data'


class ContinuousEpisode(NamedTuple):
  """One episode of T steps.

  Attributes:
    observations: float32 [T + 1, obs_dim]; observations[t] is seen before
      actions[t], observations[T] after the last action.
    actions: float32 [T, act_dim], in [-1, 1].
    rewards: float32 [T].
    terminations: bool [T]; True only possibly at the last step (task end).
    truncations: bool [T]; True only possibly at the last step (time limit).
  """
  observations: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  terminations: np.ndarray
  truncations: np.ndarray

  @property
  def length(self) -> int:
    return int(self.actions.shape[0])

  @property
  def episode_return(self) -> float:
    return float(np.sum(self.rewards, dtype=np.float64))


Metadata = Dict[str, Any]


# ------------------------------------------------------------------ checks
@functools.lru_cache(maxsize=None)
def env_dims(env_name: str) -> Tuple[int, int]:
  """(obs_dim, act_dim) of a continuous-control environment (built once, cached)."""
  env = continuous.make_continuous_env(env_name)
  try:
    return (int(env.observation_spec().shape[0]),
            int(env.action_spec().shape[0]))
  finally:
    env.close()


def check_episode(episode: ContinuousEpisode, where: str,
                  obs_dim: Optional[int] = None,
                  act_dim: Optional[int] = None) -> ContinuousEpisode:
  """`episode` with checked shapes and values, cast to the documented dtypes.

  Args:
    episode: a `ContinuousEpisode` (or anything with its five fields).
    where: names the dataset and episode in errors, e.g. "'maze/umaze-v0' episode 3".
    obs_dim, act_dim: expected dimensions (None: not checked).

  Raises:
    ValueError: naming `where` and the field: wrong rank or length, a
      dimension other than obs_dim / act_dim, NaN / inf values, actions outside
      [-1, 1], an empty episode, or a termination / truncation before the last
      step.
  """
  obs = np.asarray(episode.observations)
  act = np.asarray(episode.actions)
  if obs.ndim != 2:
    raise ValueError(f'{where}: field "observations" must be [T + 1, obs_dim], '
                     f'got shape {obs.shape}')
  if act.ndim != 2:
    raise ValueError(f'{where}: field "actions" must be [T, act_dim], got '
                     f'shape {act.shape}')
  length = act.shape[0]
  if length < 1:
    raise ValueError(f'{where}: field "actions": the episode has no steps')
  if obs.shape[0] != length + 1:
    raise ValueError(f'{where}: field "observations" has {obs.shape[0]} rows '
                     f'for {length} actions (expected T + 1 = {length + 1})')
  if obs_dim is not None and obs.shape[1] != obs_dim:
    raise ValueError(f'{where}: field "observations" has dimension '
                     f'{obs.shape[1]}, the environment expects obs_dim = {obs_dim}')
  if act_dim is not None and act.shape[1] != act_dim:
    raise ValueError(f'{where}: field "actions" has dimension {act.shape[1]}, '
                     f'the environment expects act_dim = {act_dim}')
  fields = {}
  for name in ('rewards', 'terminations', 'truncations'):
    value = np.asarray(getattr(episode, name))
    if value.shape != (length,):
      raise ValueError(f'{where}: field "{name}" must have shape [{length}], '
                       f'got {value.shape}')
    fields[name] = value
  for name, value in (('observations', obs), ('actions', act),
                      ('rewards', fields['rewards'])):
    if not np.issubdtype(value.dtype, np.number):
      raise ValueError(f'{where}: field "{name}" must be numeric, got '
                       f'{value.dtype}')
    if not np.all(np.isfinite(value)):
      bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
      raise ValueError(f'{where}: field "{name}" has {bad} NaN or infinite '
                       'values')
  worst = float(np.max(np.abs(act)))
  if worst > 1.0 + ACTION_TOLERANCE:
    raise ValueError(f'{where}: field "actions" must be in [-1, 1] (rescale '
                     f'to the normalised action space), got |a| up to {worst:g}')
  for name in ('terminations', 'truncations'):
    if np.any(fields[name][:-1]):
      raise ValueError(f'{where}: field "{name}" is True before the last step '
                       f'(step {int(np.argmax(fields[name]))} of {length})')
  return ContinuousEpisode(
      observations=obs.astype(np.float32, copy=False),
      actions=np.clip(act, -1.0, 1.0).astype(np.float32, copy=False),
      rewards=fields['rewards'].astype(np.float32, copy=False),
      terminations=fields['terminations'].astype(bool, copy=False),
      truncations=fields['truncations'].astype(bool, copy=False))


def _metadata(dataset_id: str, env_name: Optional[str],
              episodes: Sequence[ContinuousEpisode],
              ref_min_score: Optional[float], ref_max_score: Optional[float],
              obs_dim: int, act_dim: int, **extra) -> Metadata:
  return dict(
      dataset_id=dataset_id, env_name=env_name,
      ref_min_score=None if ref_min_score is None else float(ref_min_score),
      ref_max_score=None if ref_max_score is None else float(ref_max_score),
      obs_dim=int(obs_dim), act_dim=int(act_dim),
      num_episodes=len(episodes),
      num_steps=int(sum(e.length for e in episodes)), **extra)


def _check_env_name(env_name: Optional[str], where: str) -> Optional[str]:
  if env_name is None:
    return None
  try:
    return continuous.canonical_env_name(env_name)
  except ValueError as e:
    raise ValueError(f'{where}: field "env_name": {e}') from e


def _check_ref_scores(ref_min_score, ref_max_score, where: str):
  for name, value in (('ref_min_score', ref_min_score),
                      ('ref_max_score', ref_max_score)):
    if value is not None and not np.isfinite(float(value)):
      raise ValueError(f'{where}: field "{name}" must be finite, got {value!r}')
  if (ref_min_score is not None and ref_max_score is not None and
      float(ref_min_score) == float(ref_max_score)):
    raise ValueError(f'{where}: fields "ref_min_score" and "ref_max_score" are '
                     f'equal ({ref_min_score}); normalised scores would divide by 0')


# ------------------------------------------------------------------ Minari
def dataset_path(root: str, dataset_id: str) -> str:
  """ROOT/DATASET_ID: the directory Minari keeps a dataset in."""
  return os.path.join(os.fspath(root), dataset_id)


_MINARI_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _minari_root(root: str):
  """Points Minari's `MINARI_DATASETS_PATH` at `root` for the duration."""
  with _MINARI_ENV_LOCK:
    old = os.environ.get('MINARI_DATASETS_PATH')
    os.environ['MINARI_DATASETS_PATH'] = root
    try:
      yield
    finally:
      if old is None:
        del os.environ['MINARI_DATASETS_PATH']
      else:
        os.environ['MINARI_DATASETS_PATH'] = old


def write_minari_dataset(root: str,
                         dataset_id: str,
                         episodes: Iterable[ContinuousEpisode],
                         env_name: str,
                         ref_min_score: Optional[float],
                         ref_max_score: Optional[float],
                         algorithm_name: str = 'tf_offline_q',
                         description: Optional[str] = None,
                         author: str = 'tf_offline_q',
                         extra_metadata: Optional[Dict[str, Any]] = None,
                         overwrite: bool = False) -> str:
  """Writes `episodes` as the Minari dataset ROOT/DATASET_ID, atomically.

  The dataset is made by `minari.create_dataset_from_buffers` in a staging
  directory inside `root`, then renamed into place, so a reader never sees a
  half-written dataset.

  Args:
    root: the datasets root (created if missing).
    dataset_id: Minari id '(NAMESPACE/)NAME-vN', e.g. 'pointmaze/umaze-v0'.
    episodes: `ContinuousEpisode`s in the environment's flat layout.
    env_name: the environment (any spelling `continuous.canonical_env_name`
      accepts); stored as Minari's env spec, eval env and `env_name`.
    ref_min_score: mean return of a random policy (D4RL-normalised 0).
    ref_max_score: mean return of the expert / scripted policy (100).
      Minari stores the pair only when `ref_max_score` is given.
    algorithm_name, description, author: Minari metadata.
    extra_metadata: more JSON-serialisable metadata (e.g. the generator's flags).
    overwrite: replace an existing dataset (else `FileExistsError`).

  Returns:
    The dataset's directory, ROOT/DATASET_ID.

  Raises:
    FileExistsError: the dataset exists and `overwrite` is False.
    ValueError: a malformed `dataset_id`, an unknown `env_name`, or a bad
      episode (see `check_episode`), naming the dataset and field.
  """
  import gymnasium as gym  # pylint: disable=g-import-not-at-top
  import minari  # pylint: disable=g-import-not-at-top
  from minari.data_collector import EpisodeBuffer  # pylint: disable=g-import-not-at-top
  from minari.dataset.minari_dataset import parse_dataset_id  # pylint: disable=g-import-not-at-top

  root = os.path.abspath(os.fspath(root))
  where = f'Minari dataset {dataset_id!r}'
  try:
    namespace, _, _ = parse_dataset_id(dataset_id)
  except ValueError as e:
    raise ValueError(f'{where}: {e}') from e
  if env_name is None:
    raise ValueError(f'{where}: field "env_name" is required')
  env_name = _check_env_name(env_name, where)
  _check_ref_scores(ref_min_score, ref_max_score, where)
  final = dataset_path(root, dataset_id)
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f'{where} already exists at {final}; pass '
                          'overwrite=True (or --overwrite) to replace it')
  obs_dim, act_dim = env_dims(env_name)
  checked = [check_episode(e, f'{where} episode {i}', obs_dim, act_dim)
             for i, e in enumerate(episodes)]
  if not checked:
    raise ValueError(f'{where}: no episodes to write')
  buffers = [
      EpisodeBuffer(id=i, observations=e.observations, actions=e.actions,
                    rewards=e.rewards, terminations=e.terminations,
                    truncations=e.truncations)
      for i, e in enumerate(checked)]
  observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
  action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
  if continuous.env_family(env_name) != 'mujoco':
    continuous.register_robotics()  # Minari's gym.make needs the ids.
  os.makedirs(root, exist_ok=True)
  staging = tempfile.mkdtemp(dir=root, prefix='.minari-staging-')
  try:
    with _minari_root(staging), warnings.catch_warnings():
      warnings.simplefilter('ignore')  # Minari warns about unset optional fields.
      dataset = minari.create_dataset_from_buffers(
          dataset_id, buffers, env=env_name, eval_env=env_name,
          algorithm_name=algorithm_name, author=author,
          author_email='none', code_permalink='tf_offline_q',
          observation_space=observation_space, action_space=action_space,
          ref_min_score=(None if ref_min_score is None else float(ref_min_score)),
          ref_max_score=(None if ref_max_score is None else float(ref_max_score)),
          description=description or f'{dataset_id} for {env_name}, made by '
                                     'tf_offline_q')
      layout = 'observation'
      if continuous.env_family(env_name) != 'mujoco':
        layout = f'concat({", ".join(continuous.FLATTEN_ORDER)})'
      meta = {'env_name': env_name, 'observation_layout': layout}
      if ref_min_score is not None and ref_max_score is None:
        meta['ref_min_score'] = float(ref_min_score)
      if extra_metadata:
        meta.update(json.loads(json.dumps(extra_metadata)))
      dataset.storage.update_metadata(meta)
      del dataset
    os.makedirs(os.path.dirname(final), exist_ok=True)
    if namespace is not None:
      ns_file = os.path.join(staging, namespace, 'namespace_metadata.json')
      ns_final = os.path.join(root, namespace, 'namespace_metadata.json')
      if os.path.exists(ns_file) and not os.path.exists(ns_final):
        os.replace(ns_file, ns_final)
    old = None
    if os.path.exists(final):
      old = tempfile.mkdtemp(dir=root, prefix='.minari-old-')
      os.replace(final, os.path.join(old, 'dataset'))
    os.replace(os.path.join(staging, dataset_id), final)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return final


def _flat_observations(observations, where: str) -> np.ndarray:
  if isinstance(observations, dict):
    missing = [k for k in continuous.FLATTEN_ORDER if k not in observations]
    if missing:
      raise ValueError(f'{where}: field "observations" is a dict without '
                       f'{missing} (expected keys {continuous.FLATTEN_ORDER})')
    return np.concatenate(
        [np.asarray(observations[k], np.float32).reshape(
            len(observations[k]), -1) for k in continuous.FLATTEN_ORDER],
        axis=1)
  return np.asarray(observations)


def _env_name_from_minari(meta: Dict[str, Any]) -> Optional[str]:
  name = meta.get('env_name')
  if name is None:
    spec = meta.get('env_spec')
    if spec:
      try:
        name = json.loads(spec).get('id')
      except (ValueError, AttributeError):
        name = None
  return name if continuous.is_continuous_env(name) else None


def load_minari_dataset(root: str, dataset_id: str,
                        env_name: Optional[str] = None
                        ) -> Tuple[List[ContinuousEpisode], Metadata]:
  """Reads the Minari dataset ROOT/DATASET_ID (local only; nothing is downloaded).

  Args:
    root: the datasets root.
    dataset_id: e.g. 'pointmaze/umaze-v0'.
    env_name: the environment the data must fit (None: the dataset's own
      `env_name` / env spec id, if it is one of ours).

  Returns:
    (episodes, metadata) (module docstring).

  Raises:
    FileNotFoundError: no dataset there (the message says how to make one).
    ValueError: naming the dataset and field, for data that does not fit
      the environment or has bad values (see `check_episode`).
  """
  import minari  # pylint: disable=g-import-not-at-top
  where = f'Minari dataset {dataset_id!r} in {root}'
  data_dir = os.path.join(dataset_path(root, dataset_id), MINARI_DATA_DIR)
  if not os.path.isfile(os.path.join(data_dir, 'metadata.json')):
    raise FileNotFoundError(
        f'{where}: {data_dir}/metadata.json does not exist. Datasets are never '
        'downloaded: make one with launch/generate_maze_data.py, '
        'launch/generate_fetch_data.py or the locomotion generator, or point '
        'ROOT at an existing Minari datasets directory.')
  try:
    dataset = minari.MinariDataset(data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{where}: cannot be read by Minari ({e})') from e
  raw = dict(dataset.storage.metadata)
  stored_env = _env_name_from_minari(raw)
  if env_name is not None:
    env_name = _check_env_name(env_name, where)
    if stored_env is not None and stored_env != env_name:
      raise ValueError(f'{where}: field "env_name" is {stored_env!r}, but the '
                       f'data is used for {env_name!r}')
  else:
    env_name = stored_env
  obs_dim, act_dim = env_dims(env_name) if env_name else (None, None)
  episodes = []
  for i, ep in enumerate(dataset.iterate_episodes()):
    episode_where = f'{where} episode {i}'
    episodes.append(check_episode(
        ContinuousEpisode(_flat_observations(ep.observations, episode_where),
                          np.asarray(ep.actions), np.asarray(ep.rewards),
                          np.asarray(ep.terminations),
                          np.asarray(ep.truncations)),
        episode_where, obs_dim, act_dim))
  if not episodes:
    raise ValueError(f'{where}: the dataset has no episodes')
  if obs_dim is None:
    obs_dim, act_dim = (episodes[0].observations.shape[1],
                        episodes[0].actions.shape[1])
    for i, e in enumerate(episodes):
      check_episode(e, f'{where} episode {i}', obs_dim, act_dim)
  meta = _metadata(dataset_id, env_name, episodes, raw.get('ref_min_score'),
                   raw.get('ref_max_score'), obs_dim, act_dim,
                   minari=_jsonable(raw))
  return episodes, meta


def _jsonable(raw: Dict[str, Any]) -> Dict[str, Any]:
  out = {}
  for k, v in raw.items():
    if isinstance(v, set):
      v = sorted(v)
    elif not isinstance(v, (str, int, float, bool, list, dict, type(None))):
      v = str(v)
    out[k] = v
  return out


# -------------------------------------------------------------------- D4RL
D4RL_FIELDS = ('observations', 'actions', 'rewards', 'terminals', 'timeouts')


def load_d4rl_hdf5(path: str, env_name: Optional[str] = None,
                   ref_min_score: Optional[float] = None,
                   ref_max_score: Optional[float] = None
                   ) -> Tuple[List[ContinuousEpisode], Metadata]:
  """Reads a D4RL HDF5 file into episodes.

  The file holds flat arrays over N steps: observations [N, obs_dim], actions
  [N, act_dim], rewards [N], terminals [N], timeouts [N] (and optionally
  next_observations [N, obs_dim]). An episode ends at a step with
  `terminals` (a termination) or `timeouts` (a truncation). The observation
  after an episode's last step is `next_observations[i]` if the file has
  them; otherwise (D4RL's next row already starts the next episode):
    * at a timeout the last step is dropped (its next state is unknown) and the
      step before it becomes the truncated last step (as D4RL's
      `qlearning_dataset` drops timeout transitions);
    * at a terminal the last observation is repeated (discount 0 there, so the
      value of the next state is never used).
  Steps after the last terminal / timeout form a final episode that is
  neither terminated nor truncated (without next_observations its last step
  is dropped too). Episodes left with no steps are skipped.

  Args:
    path: the .hdf5 file.
    env_name: the environment the data must fit (checks obs_dim / act_dim).
    ref_min_score, ref_max_score: put into the metadata (D4RL files have none).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: naming `path` and the field: a missing field, mismatched
      lengths, or bad episodes (`check_episode`).
  """
  import h5py  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  where = f'D4RL file {path}'
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{where} does not exist')
  env_name = _check_env_name(env_name, where)
  _check_ref_scores(ref_min_score, ref_max_score, where)
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise ValueError(f'{where}: not a readable HDF5 file ({e})') from e
  with f:
    missing = [k for k in D4RL_FIELDS if k not in f]
    if missing:
      raise ValueError(f'{where}: missing field{"s" if len(missing) > 1 else ""}'
                       f' {", ".join(missing)} (a D4RL file has '
                       f'{", ".join(D4RL_FIELDS)})')
    data = {k: np.asarray(f[k]) for k in D4RL_FIELDS}
    next_obs = (np.asarray(f['next_observations'])
                if 'next_observations' in f else None)
  n = len(data['observations'])
  for k, v in list(data.items()) + ([('next_observations', next_obs)]
                                    if next_obs is not None else []):
    if len(v) != n:
      raise ValueError(f'{where}: field "{k}" has {len(v)} rows, '
                       f'"observations" has {n}')
  for k in ('rewards', 'terminals', 'timeouts'):
    data[k] = data[k].reshape(n)
  obs = data['observations'].reshape(n, -1)
  act = data['actions'].reshape(n, -1)
  ends = np.flatnonzero(data['terminals'].astype(bool) |
                        data['timeouts'].astype(bool))
  bounds = list(zip(np.r_[0, ends[:-1] + 1] if len(ends) else [], ends))
  if (ends[-1] + 1 if len(ends) else 0) < n:
    bounds.append(((ends[-1] + 1) if len(ends) else 0, n - 1))
  obs_dim, act_dim = env_dims(env_name) if env_name else (None, None)
  episodes = []
  for start, last in bounds:
    terminal = bool(data['terminals'][last])
    timeout = bool(data['timeouts'][last]) and not terminal
    if next_obs is not None:
      stop, final = last + 1, next_obs[last]
    elif terminal:
      stop, final = last + 1, obs[last]
    else:  # timeout or unfinished: drop the last step
      stop, final = last, obs[last]
    if stop <= start:
      continue
    length = stop - start
    term = np.zeros(length, bool)
    trunc = np.zeros(length, bool)
    term[-1] = terminal
    trunc[-1] = timeout
    episodes.append(check_episode(
        ContinuousEpisode(
            np.concatenate([obs[start:stop], final[None]], axis=0),
            act[start:stop], data['rewards'][start:stop], term, trunc),
        f'{where} episode {len(episodes)} (rows {start}-{stop - 1})',
        obs_dim, act_dim))
  if not episodes:
    raise ValueError(f'{where}: no episodes (field "observations" has {n} rows)')
  return episodes, _metadata(path, env_name, episodes, ref_min_score,
                             ref_max_score, episodes[0].observations.shape[1],
                             episodes[0].actions.shape[1])


# ----------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class MinariSource:
  """A Minari dataset ROOT/DATASET_ID."""
  root: str
  dataset_id: str


@dataclasses.dataclass(frozen=True)
class D4rlSource:
  """A D4RL HDF5 file."""
  path: str


ContinuousSource = Union[MinariSource, D4rlSource]


def parse_source(spec: str) -> ContinuousSource:
  """'minari:ROOT:DATASET_ID' or 'd4rl:PATH'."""
  kind, _, rest = str(spec).partition(':')
  if kind == 'minari':
    root, sep, dataset_id = rest.rpartition(':')
    if sep and root and dataset_id:
      return MinariSource(root, dataset_id)
  if kind == 'd4rl' and rest:
    return D4rlSource(rest)
  raise ValueError(f'Bad continuous-control source {spec!r}: expected '
                   '"minari:ROOT:DATASET_ID" (e.g. minari:/data/minari:'
                   'pointmaze/umaze-v0) or "d4rl:PATH.hdf5"')


def is_continuous_source(spec: Any) -> bool:
  return isinstance(spec, str) and spec.split(':', 1)[0] in ('minari', 'd4rl')


def load_source(source: Union[str, ContinuousSource],
                env_name: Optional[str] = None
                ) -> Tuple[List[ContinuousEpisode], Metadata]:
  """(episodes, metadata) of a source (a spec string or a parsed source)."""
  if isinstance(source, str):
    source = parse_source(source)
  if isinstance(source, MinariSource):
    return load_minari_dataset(source.root, source.dataset_id, env_name)
  if isinstance(source, D4rlSource):
    return load_d4rl_hdf5(source.path, env_name)
  raise TypeError(f'Unknown continuous-control source {source!r}')
