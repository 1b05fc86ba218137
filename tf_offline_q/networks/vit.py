"""Vision transformer backbone (ViT) for stacked Atari frames.

The ViT of "Scaling Offline Q-Learning with Vision Transformers" (section 3,
Figure 1a): the four stacked frames are cut into patches (6 x 6 = 36 patches of
14 x 14 pixels per 84 x 84 frame, 144 tokens in all), each patch goes through
one linear projection shared by all frames, learned position embeddings are
added, and a pre-LayerNorm transformer encoder attends jointly over all tokens.
An aggregation (see `aggregation.py`) then turns the token sequence into one
feature vector.

Model variants are named big_vision style (`S/14` is the paper's ViT-S):

  variant  width  depth  heads  mlp   patch  head_hidden
  S/14     384    12     6      1536  14     (896, 896)
  Ti/14    192    12     3      768   14     (448, 448)
  micro    32     1      2      64    14     (64,)

`head_hidden` is the width of the feed-forward layers between the aggregated
features and the Q-value output (see `q_network.py` for why 896).
"""
import dataclasses
from typing import Sequence, Tuple

import tensorflow as tf

from tf_offline_q.networks import aggregation as aggregation_lib


@dataclasses.dataclass(frozen=True)
class Variant:
  """Encoder and head sizes of one named model variant."""
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch_size: int
  head_hidden: Tuple[int, ...]


VARIANTS = {
    'S/14': Variant(width=384, depth=12, num_heads=6, mlp_dim=1536, patch_size=14,
                    head_hidden=(896, 896)),
    'Ti/14': Variant(width=192, depth=12, num_heads=3, mlp_dim=768, patch_size=14,
                     head_hidden=(448, 448)),
    'micro': Variant(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=14,
                     head_hidden=(64,)),
}


def get_variant(name) -> Variant:
  """Returns the `Variant` called `name` (a `Variant` passes through)."""
  if isinstance(name, Variant):
    return name
  if name not in VARIANTS:
    raise ValueError(f'Unknown model variant {name!r}; known variants: {sorted(VARIANTS)}')
  return VARIANTS[name]


def patch_grid(frame_shape: Sequence[int], patch_size: int) -> Tuple[int, int]:
  """Number of patches along (height, width); raises if they do not divide."""
  height, width = int(frame_shape[0]), int(frame_shape[1])
  if patch_size <= 0 or height % patch_size or width % patch_size:
    raise ValueError(
        f'Observation frames of {height}x{width} pixels cannot be cut into '
        f'{patch_size}x{patch_size} patches: both sides must be multiples of '
        f'patch_size={patch_size}.')
  return height // patch_size, width // patch_size


class PatchEmbedding(tf.keras.layers.Layer):
  """Cuts each frame into patches, projects them and adds position embeddings.

  Input:  uint8 or float `[B, H, W, T]` (T stacked frames, oldest first).
  Output: float32 `[B, T, P, D]` with P = (H / p) * (W / p) patches per frame,
    patches in raster order, D = `width`.

  uint8 pixels are scaled to [0, 1]. One `Dense(width)` projection is shared by
  all frames; the learned position embedding has one vector per (frame, patch),
  so both the time and the spatial position of a token are known to the
  encoder(s).
  """

  def __init__(self, width: int, patch_size: int, **kwargs):
    super().__init__(**kwargs)
    self.width = width
    self.patch_size = patch_size
    self.projection = tf.keras.layers.Dense(width, name='projection')

  def build(self, input_shape):
    _, height, width, stack = input_shape
    self.grid = patch_grid((height, width), self.patch_size)
    self.stack_size = int(stack)
    self.num_patches = self.grid[0] * self.grid[1]
    self.position_embedding = self.add_weight(
        name='position_embedding', shape=(self.stack_size, self.num_patches, self.width),
        initializer=tf.keras.initializers.RandomNormal(stddev=0.02))
    super().build(input_shape)

  def call(self, observation):
    x = tf.cast(observation, tf.float32)
    if observation.dtype == tf.uint8:
      x = x / 255.0
    p = self.patch_size
    gh, gw = self.grid
    # [B, H, W, T] -> [B, gh, p, gw, p, T] -> [B, T, gh, gw, p, p] -> [B, T, P, p*p]
    x = tf.reshape(x, [-1, gh, p, gw, p, self.stack_size])
    x = tf.transpose(x, [0, 5, 1, 3, 2, 4])
    x = tf.reshape(x, [-1, self.stack_size, self.num_patches, p * p])
    return self.projection(x) + self.position_embedding


class MultiHeadSelfAttention(tf.keras.layers.Layer):
  """Scaled dot-product self-attention, `[B, N, D] -> [B, N, D]`."""

  def __init__(self, width: int, num_heads: int, **kwargs):
    super().__init__(**kwargs)
    if width % num_heads:
      raise ValueError(f'width={width} is not divisible by num_heads={num_heads}')
    self.num_heads = num_heads
    self.head_dim = width // num_heads
    self.qkv = tf.keras.layers.Dense(3 * width, name='qkv')
    self.out = tf.keras.layers.Dense(width, name='out')

  def call(self, x):
    batch, tokens = tf.shape(x)[0], tf.shape(x)[1]
    qkv = tf.reshape(self.qkv(x), [batch, tokens, 3, self.num_heads, self.head_dim])
    q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))  # each [B, heads, N, d]
    # Scale q ([B, heads, N, d]) rather than the logits ([B, heads, N, N]): N > d here.
    logits = tf.matmul(q * (self.head_dim ** -0.5), k, transpose_b=True)
    weights = tf.nn.softmax(logits, axis=-1)                   # [B, heads, N, N]
    y = tf.matmul(weights, v)                                   # [B, heads, N, d]
    y = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [batch, tokens, -1])
    return self.out(y)


class EncoderBlock(tf.keras.layers.Layer):
  """Pre-LayerNorm transformer block: x + MHSA(LN(x)); x + MLP(LN(x)), GELU MLP."""

  def __init__(self, width: int, num_heads: int, mlp_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.norm1 = tf.keras.layers.LayerNormalization(epsilon=1e-6, name='norm1')
    self.attention = MultiHeadSelfAttention(width, num_heads, name='attention')
    self.norm2 = tf.keras.layers.LayerNormalization(epsilon=1e-6, name='norm2')
    self.mlp_in = tf.keras.layers.Dense(mlp_dim, activation='gelu', name='mlp_in')
    self.mlp_out = tf.keras.layers.Dense(width, name='mlp_out')

  def call(self, x):
    x = x + self.attention(self.norm1(x))
    return x + self.mlp_out(self.mlp_in(self.norm2(x)))


class Encoder(tf.keras.layers.Layer):
  """`depth` pre-LN blocks then a final LayerNorm: `[B, N, D] -> [B, N, D]`."""

  def __init__(self, variant: Variant, **kwargs):
    super().__init__(**kwargs)
    self.blocks = [EncoderBlock(variant.width, variant.num_heads, variant.mlp_dim,
                                name=f'block_{i}') for i in range(variant.depth)]
    self.norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name='norm')

  def call(self, x):
    for block in self.blocks:
      x = block(x)
    return self.norm(x)


class ViT(tf.keras.layers.Layer):
  """Standard ViT backbone: one encoder over all T * P tokens.

  Input:  `[B, H, W, T]` stacked frames.
  Output: `[B, F]` features, F given by the aggregation
    (`none`/`mean`: D; `learned`: T * P * D).

  Tokens are ordered frame-major (all patches of the oldest frame first), so
  the `none` aggregation's "last token" is the last patch of the newest frame.
  """

  def __init__(self, variant='S/14', aggregation='none', **kwargs):
    super().__init__(**kwargs)
    self.variant = get_variant(variant)
    self.embedding = PatchEmbedding(self.variant.width, self.variant.patch_size, name='embedding')
    self.encoder = Encoder(self.variant, name='encoder')
    self.aggregate = aggregation_lib.make_aggregation(aggregation, name='aggregation')

  def call(self, observation, training=False):
    del training
    x = self.embedding(observation)                      # [B, T, P, D]
    tokens = self.embedding.stack_size * self.embedding.num_patches
    x = tf.reshape(x, [-1, tokens, self.variant.width])  # [B, T*P, D]
    return self.aggregate(self.encoder(x))
