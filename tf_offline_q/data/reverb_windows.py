"""Trajectory windows of continuous-control episodes through Reverb.

The Atari path's principles (`reverb_stream`) for sequence agents (Decision
Transformer, QT, Q-Transformer): every step of every episode is written once
to a Reverb `TrajectoryWriter`; an item is a window of `K` consecutive steps
of one episode referencing those stored steps; items are sampled uniformly
and batched per replica under any `tf.distribute` strategy.

Storage. Per episode of `T` steps (a `ContinuousEpisode`-like object:
observations `[T+1, obs_dim]`, actions `[T, act_dim]`, rewards `[T]`,
terminations `[T]`, truncations `[T]`), `T + 1` steps are appended: the `T`
real steps, then one *final* step carrying `observations[T]` (zero action and
reward) so that the observation after any window exists in storage. Columns:

  observation      float32 [obs_dim]
  action           float32 [act_dim]
  reward_discount  float32 [2]   reward r_t; discount d_t = 0 if step t ended
                                 the episode by a termination, else 1
  returns          float32 [R]   R_t = sum_{t' >= t} r_t' (undiscounted, the
                                 Decision Transformer's return-to-go), then,
                                 if the layout has `gamma`, the Monte-Carlo
                                 G_t = sum_{t' >= t} gamma^(t'-t) r_t'
  timestep         int32   []    t, the step's index in its episode

Both returns are computed once per episode, at write time, over the episode
as recorded (a truncated episode's returns stop at its last step).

Items. One item per real step `t` (DT's convention): the window of steps
`t-K+1 .. t`, left-padded at episode starts. Item columns are slices of the
last `K + 1` appended steps (the item is created once step `t + 1`, possibly
the final step, is appended): `observation` the first `K` (or all `K + 1`
with `next_observation`), the other columns the first `K`. The writer's
history runs on across episodes (and starts with `K - 1` zero filler steps);
steps of an earlier episode in a window are masked after sampling: the
window's step `j` (0-based) belongs to its episode iff
`j >= K - 1 - timestep[K-1]`.

What a window carries is fixed by a `WindowLayout` (the agent's choice):
`context_length` K, `next_observation` (the observation after the window's
last step: the next step's, or the episode's final observation; for
bootstrapping a critic), `gamma` (adds the discounted return-to-go, e.g. for
Q-Transformer's Monte-Carlo lower bound). One writer serves every layout.

Sampling (`make_window_dataset`, `make_distributed_window_dataset`) yields
`Window` batches; padded steps hold zeros (observation, action, reward,
returns, timestep) and `discount` 1, `mask` False.
"""
import dataclasses
import logging
import time
from typing import Any, Dict, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np
import reverb
import tensorflow as tf

from tf_offline_q.data import reverb_stream

DataError = reverb_stream.DataError
FillStats = reverb_stream.FillStats

DEFAULT_MAX_SIZE = 50_000_000
_FLUSH_EVERY = 16
SHORT_EPISODES = ('pad', 'skip', 'error')


@dataclasses.dataclass(frozen=True)
class WindowLayout:
  """What a window item carries (the agent decides).

  Attributes:
    context_length: K, steps per window.
    observation_dim, action_dim: sizes of a step's observation and action.
    next_observation: also store the observation after the window's last step.
    gamma: also store the discounted Monte-Carlo return-to-go with this gamma.
  """
  context_length: int
  observation_dim: int
  action_dim: int
  next_observation: bool = False
  gamma: Optional[float] = None

  def __post_init__(self):
    for name in ('context_length', 'observation_dim', 'action_dim'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'WindowLayout.{name} must be an integer >= 1, got {value!r}')
    if self.gamma is not None and not 0.0 <= float(self.gamma) <= 1.0:
      raise ValueError(f'WindowLayout.gamma must be in [0, 1] or None, got {self.gamma!r}')

  @property
  def num_returns(self) -> int:
    return 1 if self.gamma is None else 2


def item_signature(layout: WindowLayout) -> Dict[str, tf.TensorSpec]:
  """Signature of one table item (K = context_length; K + 1 observations
  with `next_observation`)."""
  k = layout.context_length
  num_obs = k + 1 if layout.next_observation else k
  return {
      'observation': tf.TensorSpec([num_obs, layout.observation_dim], tf.float32,
                                   'observation'),
      'action': tf.TensorSpec([k, layout.action_dim], tf.float32, 'action'),
      'reward_discount': tf.TensorSpec([k, 2], tf.float32, 'reward_discount'),
      'returns': tf.TensorSpec([k, layout.num_returns], tf.float32, 'returns'),
      'timestep': tf.TensorSpec([k], tf.int32, 'timestep'),
  }


_COLUMNS = ('observation', 'action', 'reward_discount', 'returns', 'timestep')


class Window(NamedTuple):
  """A batch of windows, `[B, K, ...]` (fields a layout lacks are `()`).

  observation:  float32 [B, K, obs_dim]
  action:       float32 [B, K, act_dim]
  reward:       float32 [B, K]
  discount:     float32 [B, K]   0 on a step that terminated the episode
  return_to_go: float32 [B, K]   undiscounted, from the step on (DT's R_t)
  timestep:     int32   [B, K]   step index in the episode
  mask:         bool    [B, K]   False on left padding (episode start)
  terminated:   bool    [B]      the episode terminated at the window's last step
                                 (a termination can only be an episode's last step)
  next_observation: float32 [B, obs_dim] or ()  after the window's last step
  discounted_return_to_go: float32 [B, K] or ()  Monte-Carlo G_t with gamma
  """
  observation: Any
  action: Any
  reward: Any
  discount: Any
  return_to_go: Any
  timestep: Any
  mask: Any
  terminated: Any
  next_observation: Any = ()
  discounted_return_to_go: Any = ()


def window_spec(layout: WindowLayout) -> Window:
  """`Window` of unbatched `TensorSpec`s (`[K, ...]`) for `layout`."""
  k = layout.context_length
  f32 = tf.float32
  return Window(
      observation=tf.TensorSpec([k, layout.observation_dim], f32, 'observation'),
      action=tf.TensorSpec([k, layout.action_dim], f32, 'action'),
      reward=tf.TensorSpec([k], f32, 'reward'),
      discount=tf.TensorSpec([k], f32, 'discount'),
      return_to_go=tf.TensorSpec([k], f32, 'return_to_go'),
      timestep=tf.TensorSpec([k], tf.int32, 'timestep'),
      mask=tf.TensorSpec([k], tf.bool, 'mask'),
      terminated=tf.TensorSpec([], tf.bool, 'terminated'),
      next_observation=(tf.TensorSpec([layout.observation_dim], f32, 'next_observation')
                        if layout.next_observation else ()),
      discounted_return_to_go=(tf.TensorSpec([k], f32, 'discounted_return_to_go')
                               if layout.gamma is not None else ()))


# ------------------------------------------------------------------ episodes
def returns_to_go(rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
  """G_t = sum_{t' >= t} gamma^(t' - t) r_t', float32 `[T]` (float64 sums)."""
  rewards = np.asarray(rewards, np.float64)
  out = np.empty_like(rewards)
  acc = 0.0
  for t in range(len(rewards) - 1, -1, -1):
    acc = rewards[t] + gamma * acc
    out[t] = acc
  return out.astype(np.float32)


def _name(episode, index) -> str:
  eid = getattr(episode, 'episode_id', None)
  return f'episode {eid if eid is not None else index}'


def check_episode(episode, layout: WindowLayout, where: str = 'episode') -> int:
  """Validates one episode against `layout`; returns its length T.

  Raises:
    DataError: naming `where` and the field: wrong shapes or dimensions,
      NaN / infinite values, no step, or a termination before the last step.
  """
  fields = ('observations', 'actions', 'rewards', 'terminations', 'truncations')
  missing = [f for f in fields if not hasattr(episode, f)]
  if missing:
    raise DataError(f'{where}: missing fields {missing} (expected a ContinuousEpisode)')
  obs = np.asarray(episode.observations)
  act = np.asarray(episode.actions)
  rew = np.asarray(episode.rewards)
  term = np.asarray(episode.terminations)
  trunc = np.asarray(episode.truncations)
  length = len(act)
  if length < 1:
    raise DataError(f'{where}: has no step (actions has length 0)')
  if obs.ndim != 2 or obs.shape != (length + 1, layout.observation_dim):
    raise DataError(f'{where}: observations have shape {obs.shape}, expected '
                    f'({length + 1}, {layout.observation_dim}) = (T+1, observation_dim)')
  if act.ndim != 2 or act.shape[1] != layout.action_dim:
    raise DataError(f'{where}: actions have shape {act.shape}, expected '
                    f'({length}, {layout.action_dim}): wrong action dimension')
  for name, value in (('rewards', rew), ('terminations', term), ('truncations', trunc)):
    if value.shape != (length,):
      raise DataError(f'{where}: {name} have shape {value.shape}, expected ({length},)')
  for name, value in (('observations', obs), ('actions', act), ('rewards', rew)):
    if not np.all(np.isfinite(value)):
      bad = np.argwhere(~np.isfinite(value))[0]
      raise DataError(f'{where}: {name} hold NaN or infinite values (first at index '
                      f'{tuple(int(i) for i in bad)})')
  if np.any(np.asarray(term[:-1], bool)):
    raise DataError(f'{where}: terminations has a True before the last step '
                    f'(step {int(np.flatnonzero(term[:-1])[0])}): an episode ends at its '
                    'termination')
  return length


# ------------------------------------------------------------------- writing
class WindowWriter:
  """Appends episodes' steps to a table, one window item per real step.

  Steps are appended once (plus one final step per episode); items reference
  the last `K + 1` steps of the writer's history. Call `close()` (or use it
  as a context manager) to write the last items and flush.
  """

  def __init__(self,
               client: reverb.Client,
               table: str,
               layout: WindowLayout,
               short_episodes: str = 'pad',
               chunk_length: Optional[int] = None,
               source: Optional[str] = None):
    """Args:
      client: a `reverb.Client`.
      table: data table name (its signature is `item_signature(layout)`).
      layout: the `WindowLayout`.
      short_episodes: episodes shorter than K: 'pad' (DT's convention: their
        windows are left-padded like every episode start), 'skip', or 'error'
        (a `DataError` naming the episode).
      chunk_length: steps per Reverb chunk; default K + 1.
      source: the dataset's name in error messages (default: the table's).
    """
    if short_episodes not in SHORT_EPISODES:
      raise ValueError(f'short_episodes must be one of {SHORT_EPISODES}, got '
                       f'{short_episodes!r}')
    self._table = table
    self._source = source or table
    self._layout = layout
    self._k = layout.context_length
    self._short = short_episodes
    chunk = int(chunk_length or self._k + 1)
    if chunk < 1:
      raise ValueError(f'chunk_length must be >= 1, got {chunk_length}')
    keep = max(chunk, self._k + 1)
    self._writer = client.trajectory_writer(num_keep_alive_refs=keep)
    for column in _COLUMNS:
      self._writer.configure((column,), num_keep_alive_refs=keep, max_chunk_length=chunk)
    self._closed = False
    self._num_episodes_seen = 0
    self.stats = FillStats()
    self.skipped = 0
    zeros = self._zero_step()
    for _ in range(self._k - 1):
      self._writer.append(zeros)

  def _zero_step(self):
    lay = self._layout
    return {'observation': np.zeros(lay.observation_dim, np.float32),
            'action': np.zeros(lay.action_dim, np.float32),
            'reward_discount': np.array([0.0, 1.0], np.float32),
            'returns': np.zeros(lay.num_returns, np.float32),
            'timestep': np.int32(0)}

  def _create_item(self):
    h = self._writer.history
    k = self._k
    obs = h['observation'][-(k + 1):] if self._layout.next_observation else \
        h['observation'][-(k + 1):-1]
    self._writer.create_item(self._table, priority=1.0, trajectory={
        'observation': obs,
        'action': h['action'][-(k + 1):-1],
        'reward_discount': h['reward_discount'][-(k + 1):-1],
        'returns': h['returns'][-(k + 1):-1],
        'timestep': h['timestep'][-(k + 1):-1],
    })
    self.stats.items += 1
    if self.stats.items % _FLUSH_EVERY == 0:
      self._writer.flush(block_until_num_items=2 * _FLUSH_EVERY)

  def write(self, episode) -> int:
    """Appends one episode; returns the number of items it made (its T, or 0
    if skipped)."""
    if self._closed:
      raise RuntimeError('WindowWriter is closed')
    where = f'{self._source}, {_name(episode, self._num_episodes_seen)}'
    self._num_episodes_seen += 1
    length = check_episode(episode, self._layout, where)
    if length < self._k and self._short != 'pad':
      if self._short == 'error':
        raise DataError(f'{where}: has {length} steps, fewer than the window of '
                        f'{self._k} (short_episodes=\'error\')')
      self.skipped += 1
      return 0
    lay = self._layout
    obs = np.asarray(episode.observations, np.float32)
    act = np.asarray(episode.actions, np.float32)
    rew = np.asarray(episode.rewards, np.float32)
    discount = 1.0 - np.asarray(episode.terminations, np.float32)
    returns = [returns_to_go(rew)]
    if lay.gamma is not None:
      returns.append(returns_to_go(rew, float(lay.gamma)))
    returns = np.stack(returns, axis=1)
    reward_discount = np.stack([rew, discount], axis=1)
    for t in range(length):
      self._writer.append({'observation': obs[t], 'action': act[t],
                           'reward_discount': reward_discount[t],
                           'returns': returns[t], 'timestep': np.int32(t)})
      if t:
        self._create_item()  # the window ending at step t - 1
    final = self._zero_step()
    final['observation'] = obs[length]
    final['timestep'] = np.int32(length)
    self._writer.append(final)
    self._create_item()  # the window ending at step T - 1
    self.stats.episodes += 1
    self.stats.steps += length
    return length

  def close(self):
    if self._closed:
      return
    self._writer.flush()
    self._writer.close()
    self._closed = True

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


# -------------------------------------------------------------------- server
class WindowServer:
  """An in-process Reverb server with one window table per dataset.

  Example:
    layout = WindowLayout(20, obs_dim, act_dim)
    server = WindowServer({'hopper-medium-replay': layout},
                          checkpoint_dir='/tmp/reverb')
    if not server.is_filled('hopper-medium-replay'):
      server.fill('hopper-medium-replay', episodes)
      server.checkpoint()
    dataset = make_window_dataset(server.address, 'hopper-medium-replay',
                                  layout, batch_size=64)
  """

  def __init__(self,
               tables: Dict[str, WindowLayout],
               *,
               max_size: int = DEFAULT_MAX_SIZE,
               port: Optional[int] = None,
               checkpoint_dir: Optional[str] = None):
    """Args:
      tables: {table name: its WindowLayout}.
      max_size: items per table at most.
      port: gRPC port; None picks a free one.
      checkpoint_dir: where `checkpoint()` writes; a checkpoint found there is
        restored at start (its tables must have the same layouts).
    """
    if not tables:
      raise ValueError('WindowServer needs at least one table')
    self._layouts = dict(tables)
    reverb_tables = []
    for name, layout in self._layouts.items():
      reverb_tables += reverb_stream.make_tables(name, max_size=max_size,
                                                 signature=item_signature(layout))
    # Restores the latest intact checkpoint (a damaged one is set aside).
    self._server = reverb_stream.start_server(reverb_tables, port, checkpoint_dir)
    self._client = reverb.Client(self.address)
    reverb_stream._IN_PROCESS_SERVERS.add(self.address)  # pylint: disable=protected-access
    if checkpoint_dir:
      info = self._client.server_info()
      for name, layout in self._layouts.items():
        if not reverb_stream._same_signature(info[name].signature, item_signature(layout)):  # pylint: disable=protected-access
          self._server.stop()
          raise ValueError(f'Table {name!r} restored from {checkpoint_dir} has signature '
                           f'{info[name].signature}, not that of {layout}; use another '
                           'checkpoint_dir or the same layout')

  @property
  def address(self) -> str:
    return f'localhost:{self._server.port}'

  @property
  def client(self) -> reverb.Client:
    return self._client

  def layout(self, table: str) -> WindowLayout:
    if table not in self._layouts:
      raise ValueError(f'No table {table!r} on this server; tables: {list(self._layouts)}')
    return self._layouts[table]

  def num_items(self, table: str) -> int:
    self.layout(table)
    return int(self._client.server_info()[table].current_size)

  def is_filled(self, table: str) -> bool:
    self.layout(table)
    info = self._client.server_info()
    return info[reverb_stream.ready_table_name(table)].current_size > 0

  def fill(self, table: str, episodes: Iterable[Any], short_episodes: str = 'pad',
           chunk_length: Optional[int] = None, progress_every: int = 0,
           source: Optional[str] = None) -> FillStats:
    """Writes `episodes` into `table`, then marks it ready.

    `short_episodes`: see `WindowWriter`; `source` names the dataset in errors;
    `progress_every` > 0 prints a progress line every that many episodes.

    Raises:
      RuntimeError: the table was already filled.
      DataError: a bad episode (named), or no item at all.
    """
    layout = self.layout(table)
    if self.is_filled(table):
      raise RuntimeError(f'Table {table!r} is already filled')
    if self.num_items(table):
      self._client.reset(table)  # left over by a failed fill
    start = time.perf_counter()
    with WindowWriter(self._client, table, layout, short_episodes, chunk_length,
                      source) as writer:
      for episode in episodes:
        writer.write(episode)
        if progress_every and writer.stats.episodes % progress_every == 0:
          rate = writer.stats.steps / max(time.perf_counter() - start, 1e-9)
          print(f'  {table}: {writer.stats.episodes} episodes, {writer.stats.steps} steps '
                f'written ({rate:,.0f} steps/s)', flush=True)
    stats = writer.stats
    stats.seconds = time.perf_counter() - start
    if stats.items == 0:
      raise DataError(f'No window to sample for table {table!r}: {stats.episodes} episodes, '
                      f'{writer.skipped} skipped as shorter than {layout.context_length} steps')
    reverb_stream.mark_ready(self._client, table, stats)
    logging.info('Filled table %s: %d episodes, %d steps, %d windows in %.1fs', table,
                 stats.episodes, stats.steps, stats.items, stats.seconds)
    return stats

  def checkpoint(self) -> str:
    """Writes a Reverb checkpoint of all tables (with its files' sizes)."""
    return reverb_stream.write_checkpoint(self._client)

  def stop(self):
    reverb_stream._IN_PROCESS_SERVERS.discard(self.address)  # pylint: disable=protected-access
    self._server.stop()


# ------------------------------------------------------------------ sampling
def items_to_window(items: Dict[str, tf.Tensor], layout: WindowLayout) -> Window:
  """Sampled items `[B, ...]` (see `item_signature`) -> `Window` batch.

  The mask follows from the last step's timestep tau: window step j is in the
  episode iff j >= K - 1 - tau; other steps are zeroed (discount set to 1).
  """
  k = layout.context_length
  timestep = items['timestep']                                   # [B, K]
  last = timestep[:, -1:]                                        # [B, 1]
  mask = tf.range(k)[tf.newaxis, :] >= (k - 1) - last           # [B, K]
  fmask = tf.cast(mask, tf.float32)
  obs = items['observation']
  reward = items['reward_discount'][:, :, 0] * fmask
  discount = items['reward_discount'][:, :, 1] * fmask + (1.0 - fmask)
  returns = items['returns'] * fmask[:, :, tf.newaxis]
  return Window(
      observation=obs[:, :k] * fmask[:, :, tf.newaxis],
      action=items['action'] * fmask[:, :, tf.newaxis],
      reward=reward,
      discount=discount,
      return_to_go=returns[:, :, 0],
      timestep=timestep * tf.cast(mask, tf.int32),
      mask=mask,
      terminated=tf.equal(discount[:, -1], 0.0),
      next_observation=obs[:, k] if layout.next_observation else (),
      discounted_return_to_go=returns[:, :, 1] if layout.gamma is not None else ())


def make_window_dataset(server_addresses: Union[str, Sequence[str]],
                        table_names: Union[str, Sequence[str]],
                        layout: WindowLayout,
                        batch_size: int,
                        *,
                        weights: Union[str, Sequence[float]] = 'size',
                        max_in_flight_samples_per_worker: Optional[int] = None,
                        num_workers_per_iterator: int = -1,
                        num_parallel_calls: int = tf.data.AUTOTUNE,
                        prefetch: int = tf.data.AUTOTUNE,
                        ready_timeout_secs: float = 600.0,
                        timeout_seconds: Optional[float] = None) -> tf.data.Dataset:
  """One replica's infinite dataset of `Window` batches `[batch_size, K, ...]`.

  Args as `reverb_stream.make_dataset` (`timeout_seconds`: how long a server
  may not answer, see `reverb_stream.sample_items`); `layout` is the tables'
  layout (their signature is checked against it).
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  signature = item_signature(layout)
  sources = reverb_stream.resolve_sources(server_addresses, table_names,
                                          ready_timeout_secs=ready_timeout_secs,
                                          signature=signature,
                                          timeout_seconds=timeout_seconds)
  with tf.device('/cpu:0'):
    ds = reverb_stream.sample_items(
        sources, signature, batch_size, weights=weights,
        max_in_flight_samples_per_worker=max_in_flight_samples_per_worker,
        num_workers_per_iterator=num_workers_per_iterator,
        timeout_seconds=timeout_seconds)
    ds = ds.map(lambda items: items_to_window(items, layout),
                num_parallel_calls=num_parallel_calls, deterministic=False)
    ds = ds.prefetch(prefetch)
  return ds


def make_distributed_window_dataset(strategy: tf.distribute.Strategy,
                                    server_addresses: Union[str, Sequence[str]],
                                    table_names: Union[str, Sequence[str]],
                                    layout: WindowLayout,
                                    global_batch_size: int,
                                    **kwargs) -> tf.distribute.DistributedDataset:
  """Per-replica `make_window_dataset`s for `strategy` (global batch split
  evenly over replicas; see `reverb_stream.make_distributed_dataset`)."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible by the '
                     f'{replicas} replicas')

  def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
    return make_window_dataset(server_addresses, table_names, layout,
                               ctx.get_per_replica_batch_size(global_batch_size), **kwargs)

  return strategy.distribute_datasets_from_function(
      dataset_fn, options=tf.distribute.InputOptions(experimental_fetch_to_device=True))


# ----------------------------------------------------------- numpy reference
def reference_window(episode, t: int, layout: WindowLayout) -> Dict[str, np.ndarray]:
  """The window of step `t` of `episode`, in numpy (tests, debugging): the
  same fields as `Window`, unbatched."""
  k = layout.context_length
  length = len(episode.actions)
  obs = np.asarray(episode.observations, np.float32)
  act = np.asarray(episode.actions, np.float32)
  rew = np.asarray(episode.rewards, np.float32)
  term = np.asarray(episode.terminations, bool)
  rtg = returns_to_go(rew)
  out = {
      'observation': np.zeros((k, layout.observation_dim), np.float32),
      'action': np.zeros((k, layout.action_dim), np.float32),
      'reward': np.zeros(k, np.float32),
      'discount': np.ones(k, np.float32),
      'return_to_go': np.zeros(k, np.float32),
      'timestep': np.zeros(k, np.int32),
      'mask': np.zeros(k, bool),
  }
  if layout.gamma is not None:
    out['discounted_return_to_go'] = np.zeros(k, np.float32)
    g = returns_to_go(rew, float(layout.gamma))
  for j in range(k):
    s = t - (k - 1) + j
    if s < 0:
      continue
    out['observation'][j] = obs[s]
    out['action'][j] = act[s]
    out['reward'][j] = rew[s]
    out['discount'][j] = 0.0 if term[s] else 1.0
    out['return_to_go'][j] = rtg[s]
    out['timestep'][j] = s
    out['mask'][j] = True
    if layout.gamma is not None:
      out['discounted_return_to_go'][j] = g[s]
  out['terminated'] = bool(term[t]) and t == length - 1
  if layout.next_observation:
    out['next_observation'] = obs[t + 1]
  return out
