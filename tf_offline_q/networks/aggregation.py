"""Sequence aggregations: encoder tokens `[B, N, D]` -> one feature vector `[B, F]`.

The three methods of the paper (section 3, "Sequence aggregations"):

  none     the last token along the sequence axis          F = D
  mean     global average pooling over the sequence axis   F = D
  learned  learned spatial embeddings (Kumar et al., 2023): a learned matrix
           `E [N, D]` multiplied point-wise with the encoder output, then
           flattened                                       F = N * D

Choice for `learned` (the paper does not say): E is initialised to ones, so at
initialisation the layer is a plain flatten and the embedding learns how much
each (token, channel) feature matters. The point-wise product costs N * D
parameters (55,296 for ViT-S on 144 tokens); nearly all of the "about 49M"
parameters the paper attributes to learned spatial embeddings come from the
first feed-forward layer that reads the N * D flattened features (see
`q_network.py`).
"""
import tensorflow as tf

AGGREGATIONS = ('none', 'mean', 'learned')


def check_aggregation(name: str) -> str:
  if name not in AGGREGATIONS:
    raise ValueError(f'Unknown sequence aggregation {name!r}; expected one of {AGGREGATIONS}')
  return name


class LastToken(tf.keras.layers.Layer):
  """`[B, N, D] -> [B, D]`: the last token ("no aggregation")."""

  def call(self, x):
    return x[:, -1]


class MeanPool(tf.keras.layers.Layer):
  """`[B, N, D] -> [B, D]`: global average pooling over tokens."""

  def call(self, x):
    return tf.reduce_mean(x, axis=1)


class LearnedSpatialEmbedding(tf.keras.layers.Layer):
  """`[B, N, D] -> [B, N * D]`: `flatten(x * E)` with a learned `E [N, D]`."""

  def build(self, input_shape):
    self.embedding = self.add_weight(
        name='spatial_embedding', shape=(int(input_shape[1]), int(input_shape[2])),
        initializer='ones')
    super().build(input_shape)

  def call(self, x):
    x = x * self.embedding
    return tf.reshape(x, [-1, x.shape[1] * x.shape[2]])


def make_aggregation(method: str, **kwargs) -> tf.keras.layers.Layer:
  """Returns the aggregation layer for `method` ('none', 'mean' or 'learned')."""
  layer = {'none': LastToken, 'mean': MeanPool, 'learned': LearnedSpatialEmbedding}
  return layer[check_aggregation(method)](**kwargs)
