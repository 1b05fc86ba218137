"""Multi-game batches (Scaled Q-learning): one Reverb table per game, every batch mixed.

Each game keeps its own table (`reverb_stream.ReplayServer([game, ...])`, one
table per game, however the game is sharded over servers). A batch of `B`
windows is drawn across games in proportions `w_g` (uniform over games by
default, `train_eval.game_weights` otherwise), and every window is tagged with
the id of the game it came from, as the multi-game networks expect
(`networks/multi_head.py`):

  observation = {'frames':  uint8 [B, n + 1, H, W, K],
                 'game_id': int32 [B, n + 1]}     (the same id at every step)

Proportions (our choice: exact where a batch can be exact, unbiased
otherwise). Game g is owed `B * w_g` rows of each batch:

  * `floor(B * w_g)` rows are fixed: every batch holds them;
  * the `r = B - sum_g floor(B * w_g)` rows left over are drawn one by one,
    game g with probability `frac(B * w_g) / r`.

So the expected count of game g is exactly `B * w_g`, a batch never deviates
from it by a whole row when the counts are integers (4 games, batch 32: always
8 each), and a game owed less than one row per batch (40 games in a batch of
32) still appears in proportion. We chose this over sampling every row
independently (`sample_from_datasets` over games: binomial noise of
`sqrt(B w (1 - w))` rows per batch, e.g. +-2.4 of 8) and over fixed counts
only (a game owed 0.8 rows would never appear). Within a game, items are
uniform over its transitions (the table's uniform sampler; several shards of a
game are weighted by their sizes).

Rows are ordered by game (the fixed blocks, then the drawn rows); the losses
are means over the batch, so the order does not matter.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
from tf_agents.trajectories import trajectory

from tf_offline_q import specs
from tf_offline_q.data import reverb_stream
from tf_offline_q.networks import multi_head


def normalized_weights(games: Sequence[str],
                       game_weights: Optional[Sequence[float]] = None) -> List[float]:
  """`w_g`, summing to 1: uniform when `game_weights` is None or empty.

  Raises:
    ValueError: naming `game_weights` when it has another length than
      `games`, a negative or non-finite weight, or sums to 0.
  """
  if not games:
    raise ValueError('A multi-game dataset needs at least one game')
  if not game_weights:
    return [1.0 / len(games)] * len(games)
  weights = [float(w) for w in game_weights]
  if len(weights) != len(games):
    raise ValueError(f'train_eval.game_weights has {len(weights)} weights for the '
                     f'{len(games)} games {list(games)}: give one weight per game, in order')
  if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
    raise ValueError(f'train_eval.game_weights must be finite, >= 0 and not all 0; '
                     f'got {list(game_weights)}')
  total = sum(weights)
  return [w / total for w in weights]


def batch_counts(weights: Sequence[float], batch_size: int
                 ) -> Tuple[List[int], List[float], int]:
  """How a batch of `batch_size` is split: `(fixed, remainder_weights, r)`.

  fixed[g]: rows of game g in every batch, `floor(batch_size * w_g)`.
  r: rows drawn per batch, `batch_size - sum(fixed)`.
  remainder_weights[g]: probability that a drawn row is of game g,
    `frac(batch_size * w_g) / r` (all 0 when r is 0).
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  owed = [batch_size * w for w in weights]
  fixed = [int(math.floor(x + 1e-9)) for x in owed]
  r = batch_size - sum(fixed)
  fractions = [max(x - f, 0.0) for x, f in zip(owed, fixed)]
  total = sum(fractions)
  remainder = [f / total for f in fractions] if r and total > 0 else [0.0] * len(weights)
  return fixed, remainder, r


def tag_items(items: Dict[str, tf.Tensor], game_id: int) -> Dict[str, tf.Tensor]:
  """One raw item with its game: adds `'game_id'` (int32 scalar)."""
  return dict(items, game_id=tf.constant(game_id, tf.int32))


def items_to_multi_game_trajectory(items: Dict[str, tf.Tensor],
                                   stack_size: int = specs.STACK_SIZE,
                                   n_step: int = 3) -> trajectory.Trajectory:
  """Tagged items `[B, ...]` (with `'game_id'` `[B]`) -> a `Trajectory` whose
  observation is `{'frames': [B, n+1, H, W, K], 'game_id': int32 [B, n+1]}`."""
  game_id = items['game_id']
  experience = reverb_stream.items_to_trajectory(
      {k: v for k, v in items.items() if k != 'game_id'}, stack_size, n_step)
  game = tf.repeat(game_id[:, None], n_step + 1, axis=1)
  return experience._replace(observation={multi_head.FRAMES: experience.observation,
                                          multi_head.GAME_ID: game})


def make_dataset(server_addresses: Union[str, Sequence[str]],
                 games: Sequence[str],
                 batch_size: int,
                 game_weights: Optional[Sequence[float]] = None,
                 n_step: int = 3,
                 stack_size: int = specs.STACK_SIZE,
                 frame_shape: Sequence[int] = specs.FRAME_SHAPE,
                 *,
                 num_parallel_calls: int = tf.data.AUTOTUNE,
                 prefetch: int = tf.data.AUTOTUNE,
                 ready_timeout_secs: float = 600.0,
                 timeout_seconds: Optional[float] = None) -> tf.data.Dataset:
  """One replica's dataset of mixed multi-game `Trajectory` batches.

  Args:
    server_addresses: every Reverb server to read from (see
      `reverb_stream.resolve_sources`).
    games: table (game) names; game `games[i]` gets id `i`.
    batch_size: rows per batch (this replica's).
    game_weights: proportions of the games (None: uniform); see module doc.
    n_step, stack_size, frame_shape: the tables' layout.
    num_parallel_calls, prefetch, ready_timeout_secs, timeout_seconds: as
      `reverb_stream.make_dataset`.
  Returns:
    An infinite `tf.data.Dataset` of `Trajectory` with the dict observation of
    the module docstring and every other field `[batch_size, n_step + 1]`.
  """
  weights = normalized_weights(games, game_weights)
  fixed, remainder, r = batch_counts(weights, batch_size)
  signature = reverb_stream.item_signature(stack_size, n_step, frame_shape)
  in_flight = 2 * max(max(fixed), 1)
  addresses = []
  with tf.device('/cpu:0'):
    per_game = []
    for game_id, game in enumerate(games):
      sources = reverb_stream.resolve_sources(
          server_addresses, [game], stack_size, n_step, frame_shape, ready_timeout_secs,
          timeout_seconds=timeout_seconds)
      addresses += [a for a, _, _ in sources]
      items = reverb_stream.unbatched_items(sources, signature,
                                            max_in_flight_samples_per_worker=in_flight)
      per_game.append(items.map(lambda x, g=game_id: tag_items(x, g)))
    parts = [ds.batch(count, drop_remainder=True)
             for ds, count in zip(per_game, fixed) if count]
    if r:
      drawn = [(ds, w) for ds, w in zip(per_game, remainder) if w > 0]
      mixed = (drawn[0][0] if len(drawn) == 1 else tf.data.Dataset.sample_from_datasets(
          [ds for ds, _ in drawn], weights=[w for _, w in drawn]))
      parts.append(mixed.batch(r, drop_remainder=True))
    ds = parts[0] if len(parts) == 1 else tf.data.Dataset.zip(tuple(parts)).map(
        lambda *blocks: tf.nest.map_structure(lambda *x: tf.concat(x, axis=0), *blocks))
    ds = ds.map(lambda items: items_to_multi_game_trajectory(items, stack_size, n_step),
                num_parallel_calls=num_parallel_calls, deterministic=False)
    ds = ds.prefetch(prefetch)
  return reverb_stream.watch_servers(ds, addresses, timeout_seconds)


def make_distributed_dataset(strategy: tf.distribute.Strategy,
                             server_addresses: Union[str, Sequence[str]],
                             games: Sequence[str],
                             global_batch_size: int,
                             game_weights: Optional[Sequence[float]] = None,
                             n_step: int = 3,
                             **kwargs) -> tf.distribute.DistributedDataset:
  """Per-replica `make_dataset`s: each replica's batch (`global_batch_size /
  replicas`) holds the proportions by itself."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible '
                     f'by the {replicas} replicas')

  def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
    return make_dataset(server_addresses, games, ctx.get_per_replica_batch_size(global_batch_size),
                        game_weights, n_step=n_step, **kwargs)

  return strategy.distribute_datasets_from_function(
      dataset_fn, options=tf.distribute.InputOptions(experimental_fetch_to_device=True))


def expected_counts(games: Sequence[str], batch_size: int,
                    game_weights: Optional[Sequence[float]] = None) -> np.ndarray:
  """`[G]` expected rows of each game per batch, `batch_size * w_g`."""
  return batch_size * np.asarray(normalized_weights(games, game_weights))
