"""Per-dimension discretisation of a bounded continuous action (Q-Transformer).

Each of the d_A action dimensions is cut independently into `num_bins` equal
bins between the action spec's bounds [low_j, high_j]:

  width_j   = (high_j - low_j) / num_bins
  bin_j(a)  = clip(floor((a_j - low_j) / width_j), 0, num_bins - 1)
  centre_jk = low_j + (k + 1/2) width_j

`from_bins(to_bins(a))` is the centre of a's bin, so it is within half a bin
width of `a` for every `a` in [low, high] (values outside are clipped into the
edge bins first). The paper uses 256 bins per dimension.
"""
import numpy as np
import tensorflow as tf


class Discretizer:
  """Maps `[..., d_A]` continuous actions to `[..., d_A]` int32 bins and back."""

  def __init__(self, action_spec, num_bins: int):
    """Args:
      action_spec: bounded float spec of shape `[d_A]` with finite bounds
        (scalar bounds are broadcast to every dimension).
      num_bins: bins per dimension, >= 2.
    """
    if action_spec.shape.rank != 1 or not action_spec.dtype.is_floating:
      raise ValueError(f'Q-Transformer needs a float action spec of shape [d_A]; got {action_spec}')
    if num_bins < 2:
      raise ValueError(f'num_bins must be >= 2, got {num_bins}')
    dims = int(action_spec.shape[0])
    low = np.broadcast_to(np.asarray(getattr(action_spec, 'minimum', -np.inf), np.float64), [dims])
    high = np.broadcast_to(np.asarray(getattr(action_spec, 'maximum', np.inf), np.float64), [dims])
    if not (np.isfinite(low).all() and np.isfinite(high).all() and (high > low).all()):
      raise ValueError(f'the action spec needs finite bounds with maximum > minimum; got '
                       f'minimum={low}, maximum={high} in {action_spec}')
    self.num_bins = int(num_bins)
    self.action_dims = dims
    self.low = tf.constant(low, tf.float32)                       # [d_A]
    self.high = tf.constant(high, tf.float32)                     # [d_A]
    self.width = tf.constant((high - low) / num_bins, tf.float32)  # [d_A]

  def to_bins(self, action):
    """`[..., d_A]` float actions -> `[..., d_A]` int32 bin indices."""
    action = tf.cast(action, tf.float32)
    index = tf.math.floor((action - self.low) / self.width)
    return tf.cast(tf.clip_by_value(index, 0.0, self.num_bins - 1.0), tf.int32)

  def from_bins(self, bins):
    """`[..., d_A]` integer bin indices -> `[..., d_A]` float bin centres."""
    return self.low + (tf.cast(bins, tf.float32) + 0.5) * self.width

  def centres(self):
    """`[d_A, num_bins]` centre of every bin of every dimension."""
    bins = tf.tile(tf.range(self.num_bins)[:, None], [1, self.action_dims])  # [N, d_A]
    return tf.transpose(self.from_bins(bins))
