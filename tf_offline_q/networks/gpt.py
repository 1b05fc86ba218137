"""A GPT-style causal transformer trunk (Keras layers of our own).

The trunk of the Decision Transformer (Chen et al., 2021) and of QT: GPT-2
blocks with pre-LayerNorm, masked (causal) multi-head self-attention, a
two-layer MLP of width `4 * width`, and dropout on the embeddings, the
attention weights and both residual branches:

  h = drop(x [+ position embedding])
  h = h + drop(Attn(LN(h)))        attention of token i over tokens j <= i
  h = h + drop(MLP(LN(h)))         MLP(x) = W2 act(W1 x)
  out = LN(h)

An optional key mask `[B, N]` (False on left padding) removes padded tokens
from every query's attention. The Decision Transformer adds no position
embedding inside the GPT (its official code removes GPT-2's `wpe`): the
episode timestep embedding (`TimestepEmbedding`) is added to the tokens
instead. `max_positions` turns on learned position embeddings for other uses.
"""
from typing import Optional

import tensorflow as tf

# Added to the logits of masked (future or padded) keys; finite so that a
# query with every key masked (a padded token) gets uniform weights, not NaN.
_MASKED_LOGIT = -1e9


def causal_mask(num_tokens, key_mask: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Attention mask, bool `[B or 1, 1, N, N]`: query i may see key j iff j <= i
  (and `key_mask[b, j]`, if given, bool `[B, N]`)."""
  causal = tf.linalg.band_part(tf.ones([num_tokens, num_tokens], tf.bool), -1, 0)
  mask = causal[tf.newaxis, tf.newaxis]
  if key_mask is not None:
    mask = tf.logical_and(mask, tf.cast(key_mask, tf.bool)[:, tf.newaxis, tf.newaxis, :])
  return mask


class CausalSelfAttention(tf.keras.layers.Layer):
  """Masked multi-head self-attention, `[B, N, D] -> [B, N, D]`."""

  def __init__(self, width: int, num_heads: int, dropout: float = 0.1, **kwargs):
    super().__init__(**kwargs)
    if width % num_heads:
      raise ValueError(f'width={width} is not divisible by num_heads={num_heads}')
    self.num_heads = num_heads
    self.head_dim = width // num_heads
    self.qkv = tf.keras.layers.Dense(3 * width, name='qkv')
    self.out = tf.keras.layers.Dense(width, name='out')
    self.attention_dropout = tf.keras.layers.Dropout(dropout)

  def call(self, x, mask, training=False):
    """x: float `[B, N, D]`; mask: bool `[B or 1, 1, N, N]` (see `causal_mask`)."""
    batch, tokens = tf.shape(x)[0], tf.shape(x)[1]
    qkv = tf.reshape(self.qkv(x), [batch, tokens, 3, self.num_heads, self.head_dim])
    q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))  # each [B, heads, N, d]
    logits = tf.matmul(q * (self.head_dim ** -0.5), k, transpose_b=True)  # [B, h, N, N]
    logits = tf.where(mask, logits, _MASKED_LOGIT)
    weights = self.attention_dropout(tf.nn.softmax(logits, axis=-1), training=training)
    y = tf.matmul(weights, v)                                              # [B, h, N, d]
    y = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [batch, tokens, -1])
    return self.out(y)


class GPTBlock(tf.keras.layers.Layer):
  """Pre-LN block: x + drop(Attn(LN(x))); x + drop(MLP(LN(x))), `[B, N, D]`."""

  def __init__(self, width: int, num_heads: int, mlp_dim: int, dropout: float = 0.1,
               activation: str = 'gelu', **kwargs):
    super().__init__(**kwargs)
    self.norm1 = tf.keras.layers.LayerNormalization(epsilon=1e-5, name='norm1')
    self.attention = CausalSelfAttention(width, num_heads, dropout, name='attention')
    self.norm2 = tf.keras.layers.LayerNormalization(epsilon=1e-5, name='norm2')
    self.mlp_in = tf.keras.layers.Dense(mlp_dim, activation=activation, name='mlp_in')
    self.mlp_out = tf.keras.layers.Dense(width, name='mlp_out')
    self.dropout1 = tf.keras.layers.Dropout(dropout)
    self.dropout2 = tf.keras.layers.Dropout(dropout)

  def call(self, x, mask, training=False):
    x = x + self.dropout1(self.attention(self.norm1(x), mask, training=training),
                          training=training)
    return x + self.dropout2(self.mlp_out(self.mlp_in(self.norm2(x))), training=training)


class GPT(tf.keras.layers.Layer):
  """Causal transformer trunk: token embeddings `[B, N, D]` -> `[B, N, D]`.

  Output token i depends only on input tokens j <= i (and not on tokens whose
  `key_mask` is False).
  """

  def __init__(self,
               width: int = 128,
               depth: int = 3,
               num_heads: int = 1,
               mlp_ratio: int = 4,
               dropout: float = 0.1,
               activation: str = 'gelu',
               max_positions: Optional[int] = None,
               **kwargs):
    """Args:
      width: token width D.
      depth: number of blocks.
      num_heads: attention heads (must divide `width`).
      mlp_ratio: MLP hidden width / `width` (GPT-2: 4).
      dropout: embedding, attention and residual dropout rate.
      activation: MLP activation ('gelu' as GPT-2; the DT's official gym code
        uses 'relu').
      max_positions: if set, learned position embeddings for up to this many
        tokens are added to the inputs; None (the Decision Transformer) adds none.
    """
    super().__init__(**kwargs)
    if depth < 1:
      raise ValueError(f'depth must be >= 1, got {depth}')
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f'dropout must be in [0, 1), got {dropout}')
    self.width = width
    self.max_positions = max_positions
    self.embedding_dropout = tf.keras.layers.Dropout(dropout)
    self.blocks = [GPTBlock(width, num_heads, mlp_ratio * width, dropout, activation,
                            name=f'block_{i}') for i in range(depth)]
    self.norm = tf.keras.layers.LayerNormalization(epsilon=1e-5, name='norm')

  def build(self, input_shape):
    if int(input_shape[-1]) != self.width:
      raise ValueError(f'GPT of width {self.width} got tokens of width {input_shape[-1]}')
    if self.max_positions:
      self.position_embedding = self.add_weight(
          name='position_embedding', shape=(self.max_positions, self.width),
          initializer=tf.keras.initializers.RandomNormal(stddev=0.02))
    super().build(input_shape)

  def call(self, tokens, key_mask=None, training=False):
    """tokens: float `[B, N, D]`; key_mask: optional bool `[B, N]`.

    Returns:
      float `[B, N, D]`.
    """
    n = tf.shape(tokens)[1]
    x = tokens
    if self.max_positions:
      x = x + self.position_embedding[:n]
    x = self.embedding_dropout(x, training=training)
    mask = causal_mask(n, key_mask)
    for block in self.blocks:
      x = block(x, mask, training=training)
    return self.norm(x)


class TimestepEmbedding(tf.keras.layers.Layer):
  """Learned embedding of episode timesteps: int `[B, K]` -> float `[B, K, D]`.

  Timesteps >= `max_timestep` share the last row (an episode longer than the
  data's longest still runs).
  """

  def __init__(self, max_timestep: int, width: int, **kwargs):
    super().__init__(**kwargs)
    if max_timestep < 1:
      raise ValueError(f'max_timestep must be >= 1, got {max_timestep}')
    self.max_timestep = int(max_timestep)
    self.embedding = tf.keras.layers.Embedding(self.max_timestep, width, name='table')

  def call(self, timestep):
    return self.embedding(tf.clip_by_value(tf.cast(timestep, tf.int32), 0,
                                           self.max_timestep - 1))
