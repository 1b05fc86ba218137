"""What the continuous-control data generators share: resumable chunks and rollouts.

`EpisodeChunks` keeps generated episodes in numbered chunk files

  WORK_DIR/config.json        the generator's settings (a rerun must match)
  WORK_DIR/chunk_00000.npz    episodes of chunk 0 (written atomically)
  ...

so a long generation that is interrupted resumes at the first missing chunk.
Each chunk is generated from its own seed (e.g. `seed * 100003 + index`),
so the result does not depend on where it was interrupted.

Progress lines come from `tf_offline_q.progress.Progress`.
"""
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tf_offline_q import files
from tf_offline_q.data.minari_data import ContinuousEpisode

_CONFIG = 'config.json'


def _chunk_name(index: int) -> str:
  return f'chunk_{index:05d}.npz'


def episodes_to_arrays(episodes: Sequence[ContinuousEpisode]) -> Dict[str, np.ndarray]:
  """Episodes concatenated along time, with their lengths."""
  return {
      'lengths': np.array([e.length for e in episodes], np.int64),
      'observations': np.concatenate([e.observations for e in episodes]),
      'actions': np.concatenate([e.actions for e in episodes]),
      'rewards': np.concatenate([e.rewards for e in episodes]),
      'terminations': np.concatenate([e.terminations for e in episodes]),
      'truncations': np.concatenate([e.truncations for e in episodes]),
  }


def arrays_to_episodes(arrays: Mapping[str, np.ndarray]) -> List[ContinuousEpisode]:
  """Inverse of `episodes_to_arrays`."""
  episodes, t, o = [], 0, 0
  for length in arrays['lengths']:
    length = int(length)
    episodes.append(ContinuousEpisode(
        arrays['observations'][o:o + length + 1],
        arrays['actions'][t:t + length], arrays['rewards'][t:t + length],
        arrays['terminations'][t:t + length],
        arrays['truncations'][t:t + length]))
    t += length
    o += length + 1
  return episodes


class EpisodeChunks:
  """Resumable, chunked episode storage (module docstring).

  Args:
    work_dir: directory of the chunk files (created).
    num_chunks: how many chunks make the whole dataset.
    config: the generator's settings; if `work_dir` already holds a different
      config, a `ValueError` names both (delete the directory or use the same
      settings), so a resumed run never mixes data of two settings.
  """

  def __init__(self, work_dir: str, num_chunks: int, config: Mapping[str, Any]):
    if num_chunks < 1:
      raise ValueError(f'num_chunks must be >= 1, got {num_chunks}')
    self.work_dir = os.fspath(work_dir)
    self.num_chunks = int(num_chunks)
    config = json.loads(json.dumps(dict(config, num_chunks=self.num_chunks),
                                   sort_keys=True))
    os.makedirs(self.work_dir, exist_ok=True)
    path = os.path.join(self.work_dir, _CONFIG)
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
      if saved != config:
        raise ValueError(
            f'{self.work_dir} holds chunks made with other settings:\n'
            f'  saved: {saved}\n  now:   {config}\n'
            'Use the same settings to resume, or delete that directory.')
    else:
      files.atomic_write_text(path, json.dumps(config, indent=2) + '\n')

  def path(self, index: int) -> str:
    return os.path.join(self.work_dir, _chunk_name(index))

  def is_done(self, index: int) -> bool:
    return os.path.exists(self.path(index))

  def missing(self) -> List[int]:
    return [i for i in range(self.num_chunks) if not self.is_done(i)]

  def save(self, index: int, episodes: Sequence[ContinuousEpisode],
           info: Optional[Mapping[str, float]] = None) -> None:
    """Writes chunk `index` atomically; `info` holds numbers (e.g. returns)."""
    arrays = episodes_to_arrays(episodes)
    for k, v in (info or {}).items():
      arrays['info_' + k] = np.asarray(v)
    fd, tmp = tempfile.mkstemp(dir=self.work_dir, suffix='.npz.tmp')
    try:
      with os.fdopen(fd, 'wb') as f:
        np.savez(f, **arrays)
      os.replace(tmp, self.path(index))
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise

  def load(self, index: int) -> Tuple[List[ContinuousEpisode], Dict[str, np.ndarray]]:
    """(episodes, info) of chunk `index`."""
    path = self.path(index)
    try:
      with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError) as e:
      raise ValueError(f'{path}: unreadable chunk ({e}); delete it to '
                       'regenerate it') from e
    info = {k[len('info_'):]: v for k, v in arrays.items()
            if k.startswith('info_')}
    return arrays_to_episodes(arrays), info

  def load_all(self) -> Tuple[List[ContinuousEpisode], Dict[str, List[np.ndarray]]]:
    """All chunks' episodes in order, and each info field per chunk."""
    missing = self.missing()
    if missing:
      raise ValueError(f'{self.work_dir}: chunks {missing} are missing')
    episodes, infos = [], {}
    for i in range(self.num_chunks):
      chunk, info = self.load(i)
      episodes.extend(chunk)
      for k, v in info.items():
        infos.setdefault(k, []).append(v)
    return episodes, infos


# ---------------------------------------------------------------- rollouts
def rollout(env, policy, after_step: Optional[Callable[[Any], Any]] = None
            ) -> Tuple[ContinuousEpisode, Dict[str, Any]]:
  """Plays one episode of a `ContinuousEnvironment` with `policy(observation) -> action`.

  `policy.reset()`, if it has one, is called before the episode.
  `after_step(time_step) -> time_step`, if given, sees every step's result
  before it is recorded (e.g. `maze_planner.GoalRelay` drawing a new goal).

  Returns:
    (episode, env.last_episode) with the episode's observations [T + 1],
    actions [T] (as given to the environment, clipped to [-1, 1]), rewards,
    and the terminal / truncation flag at the last step.
  """
  if hasattr(policy, 'reset'):
    policy.reset()
  time_step = env.reset()
  observations = [time_step.observation]
  actions, rewards = [], []
  while True:
    action = np.clip(np.asarray(policy(time_step.observation), np.float32),
                     -1.0, 1.0)
    time_step = env.step(action)
    if after_step is not None:
      time_step = after_step(time_step)
    actions.append(action)
    rewards.append(time_step.reward)
    observations.append(time_step.observation)
    if time_step.is_last():
      break
  info = env.last_episode
  length = len(actions)
  terminations = np.zeros(length, bool)
  truncations = np.zeros(length, bool)
  truncations[-1] = info['truncated']
  terminations[-1] = not info['truncated']
  return ContinuousEpisode(
      np.stack(observations).astype(np.float32),
      np.stack(actions).astype(np.float32),
      np.asarray(rewards, np.float32), terminations, truncations), info


def average_return(env, policy, num_episodes: int) -> Dict[str, float]:
  """Mean return, its standard error and the success rate over `num_episodes`."""
  returns, successes = [], []
  for _ in range(num_episodes):
    _, info = rollout(env, policy)
    returns.append(info['return'])
    successes.append(float(info['success']))
  returns = np.asarray(returns, np.float64)
  return {
      'mean_return': float(returns.mean()),
      'stderr': float(returns.std(ddof=1) / np.sqrt(len(returns)))
                if len(returns) > 1 else 0.0,
      'success_rate': float(np.mean(successes)),
      'episodes': int(num_episodes),
  }


def uniform_random_policy(action_dim: int, rng: np.random.Generator):
  """policy(observation) -> uniform action in [-1, 1]^action_dim."""
  return lambda observation: rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)


def remove_work_dir(work_dir: str, root: str) -> None:
  """Deletes `work_dir`, then its parents up to (not including) `root` if empty."""
  shutil.rmtree(work_dir, ignore_errors=True)
  parent = os.path.dirname(os.path.abspath(work_dir))
  root = os.path.abspath(root)
  while parent.startswith(root + os.sep) and parent != root:
    try:
      os.rmdir(parent)
    except OSError:
      break
    parent = os.path.dirname(parent)
