"""The exported transitions (`transitions.npz`) and the n-step batches built from them.

`export.py` (project venv) writes, from the project's own reader
(`reverb_stream.iterate_source`: the same subset of the same episodes that
`launch/train.py` loads into Reverb, and `reverb_stream.item_starts`: the same
steps that start a Reverb item), one file:

  frames    uint8   [N, H, W]   every step of every selected episode, episode
                                after episode (the step's newest frame)
  episode   int32   [N]         episode number of each step
  action    int64   [N]
  reward    float32 [N]         raw reward of the step
  discount  float32 [N]         0 on the last step of a terminal episode, else 1
  starts    int64   [M]         steps that start a transition (Reverb's items)
  meta      str                 JSON: game, source, fraction, subset_mode,
                                data_seed, stack_size, n_step, counts

This module (NumPy only: it runs in the d3rlpy venv too) rebuilds exactly
what the project's sampler gives the agents (`reverb_stream.items_to_trajectory`
then `losses.n_step_return`):

  s_0     = frames g-K+1 .. g, oldest first, frames of an earlier episode
            (or before the first step) zeroed: Dopamine's zero padding
  G       = sum_{t<n} gamma^t (prod_{k<t} d_{g+k}) clip(r_{g+t}, -c, c)
  alive   = prod_{k<n} d_{g+k}          (0 if the episode ended within n steps)
  s_n     = the state at g + n          (unused when alive = 0)

so a d3rlpy target  y = G + gamma^n (1 - terminal) Q'(s_n)  with
terminal = 1 - alive and interval = n  is the project's n-step target.
Transitions are drawn uniformly with replacement from `starts`, as Reverb's
uniform sampler draws items.
"""
import json
import zipfile
from typing import Dict, NamedTuple, Optional

import numpy as np

FORMAT = 'tf_offline_q.d3rlpy_reference.transitions'
VERSION = 1
ARRAYS = {'frames': np.uint8, 'episode': np.int32, 'action': np.int64,
          'reward': np.float32, 'discount': np.float32, 'starts': np.int64}


class Batch(NamedTuple):
  """An n-step batch. Observations are uint8 `[B, H, W, K]` (the project's layout)."""
  index: np.ndarray         # int64 [B]  the starting steps
  observation: np.ndarray   # uint8 [B, H, W, K]  s_0
  action: np.ndarray        # int64 [B]  a_0
  n_step_return: np.ndarray  # float32 [B]  G (clipped rewards)
  alive: np.ndarray         # float32 [B]  prod of the n discounts
  next_observation: np.ndarray  # uint8 [B, H, W, K]  s_n


class TransitionTable:
  """The arrays of a `transitions.npz` (see the module docstring)."""

  def __init__(self, arrays: Dict[str, np.ndarray], meta: dict):
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
      raise ValueError(f'transitions: missing arrays {missing}')
    self.frames = np.asarray(arrays['frames'], np.uint8)
    self.episode = np.asarray(arrays['episode'], np.int32)
    self.action = np.asarray(arrays['action'], np.int64)
    self.reward = np.asarray(arrays['reward'], np.float32)
    self.discount = np.asarray(arrays['discount'], np.float32)
    self.starts = np.asarray(arrays['starts'], np.int64)
    self.meta = dict(meta)
    n = len(self.frames)
    if self.frames.ndim != 3:
      raise ValueError(f'transitions: frames must be [N, H, W], got {self.frames.shape}')
    for name in ('episode', 'action', 'reward', 'discount'):
      if len(getattr(self, name)) != n:
        raise ValueError(f'transitions: {name} has {len(getattr(self, name))} steps, '
                         f'frames has {n}')
    if not len(self.starts):
      raise ValueError('transitions: no step starts a transition (too small a subset?)')
    if self.starts.min() < 0 or self.starts.max() >= n:
      raise ValueError('transitions: starts outside the steps')
    if not np.isfinite(self.reward).all():
      raise ValueError('transitions: non-finite reward')
    self.stack_size = int(self.meta.get('stack_size', 4))
    self.n_step = int(self.meta.get('n_step', 3))

  @classmethod
  def load(cls, path: str) -> 'TransitionTable':
    """Reads `path`; ValueError naming it if it is not a transitions file."""
    try:
      with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
      raise ValueError(f'{path}: not a readable .npz ({e}); export it again') from e
    try:
      meta = json.loads(str(arrays.pop('meta')))
    except (KeyError, json.JSONDecodeError) as e:
      raise ValueError(f'{path}: no valid "meta" entry; export it again') from e
    if meta.get('format') != FORMAT or meta.get('version') != VERSION:
      raise ValueError(f'{path}: format {meta.get("format")!r} v{meta.get("version")}, '
                       f'expected {FORMAT!r} v{VERSION}; export it again')
    try:
      return cls(arrays, meta)
    except ValueError as e:
      raise ValueError(f'{path}: {e}') from e

  def save(self, path: str) -> None:
    """Writes the table to `path` (the caller renames a temporary file into place)."""
    meta = dict(self.meta, format=FORMAT, version=VERSION)
    with open(path, 'wb') as f:
      np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)),
               **{k: getattr(self, k) for k in ARRAYS})

  @property
  def num_transitions(self) -> int:
    return len(self.starts)

  def stacked(self, index: np.ndarray) -> np.ndarray:
    """uint8 `[B, H, W, K]` states at steps `index` (zero padding at episode starts)."""
    index = np.asarray(index, np.int64)
    k = self.stack_size
    offsets = np.arange(-k + 1, 1)                              # [K] oldest first
    source = index[:, None] + offsets[None, :]                  # [B, K]
    valid = source >= 0
    source = np.clip(source, 0, len(self.frames) - 1)
    valid &= self.episode[source] == self.episode[index][:, None]
    frames = self.frames[source] * valid[:, :, None, None].astype(np.uint8)  # [B, K, H, W]
    return np.ascontiguousarray(np.moveaxis(frames, 1, -1))

  def batch(self, index: np.ndarray, gamma: float,
            reward_clip: Optional[float] = 1.0) -> Batch:
    """The n-step transitions starting at steps `index` (elements of `starts`)."""
    index = np.asarray(index, np.int64)
    n, last = self.n_step, len(self.frames) - 1
    steps = np.clip(index[:, None] + np.arange(n)[None, :], 0, last)   # [B, n]
    rewards = self.reward[steps]
    if reward_clip is not None:
      rewards = np.clip(rewards, -reward_clip, reward_clip)
    discounts = self.discount[steps]
    alive_before = np.cumprod(np.concatenate(
        [np.ones((len(index), 1), np.float32), discounts[:, :-1]], axis=1), axis=1)
    gamma_t = np.float32(gamma) ** np.arange(n, dtype=np.float32)
    returns = np.sum(gamma_t * alive_before * rewards, axis=1, dtype=np.float32)
    alive = np.prod(discounts, axis=1).astype(np.float32)
    next_index = np.minimum(index + n, last)
    return Batch(index=index, observation=self.stacked(index), action=self.action[index],
                 n_step_return=returns.astype(np.float32), alive=alive,
                 next_observation=self.stacked(next_index))

  def sample(self, rng: np.random.Generator, batch_size: int, gamma: float,
             reward_clip: Optional[float] = 1.0) -> Batch:
    """A uniform batch (with replacement) of the transitions, like Reverb's sampler."""
    index = self.starts[rng.integers(0, len(self.starts), size=batch_size)]
    return self.batch(index, gamma, reward_clip)
