"""Spatio-temporal ViT backbone (ViT-ts).

Figure 1b of the paper: the same patch embedding as the ViT, then two full
encoders of the chosen variant, one after the other:

1. a *temporal* encoder that attends only across the T frames of one patch
   position (patch positions folded into the batch axis: `[B * P, T, D]`);
2. a *spatial* encoder that attends across the P patches of one frame
   (frames folded into the batch axis: `[B * T, P, D]`).

Aggregation (section 3): for `none` and `learned` it is applied once, after the
spatial encoder, to the T * P output tokens (frame-major, as in the ViT). For
`mean` the mean is taken after the temporal encoder (over the T frames, leaving
one token per patch position, `[B, P, D]`, which the spatial encoder then reads
as a single frame) and again after the spatial encoder (over the P patches).
"""
import tensorflow as tf

from tf_offline_q.networks import aggregation as aggregation_lib
from tf_offline_q.networks import vit


class ViTTS(tf.keras.layers.Layer):
  """ViT with spatio-temporal attention.

  Input:  `[B, H, W, T]` stacked frames.
  Output: `[B, F]` features (`none`/`mean`: D; `learned`: T * P * D).
  """

  def __init__(self, variant='S/14', aggregation='none', **kwargs):
    super().__init__(**kwargs)
    self.variant = vit.get_variant(variant)
    self.aggregation = aggregation_lib.check_aggregation(aggregation)
    self.embedding = vit.PatchEmbedding(self.variant.width, self.variant.patch_size,
                                        name='embedding')
    self.temporal_encoder = vit.Encoder(self.variant, name='temporal_encoder')
    self.spatial_encoder = vit.Encoder(self.variant, name='spatial_encoder')
    self.aggregate = aggregation_lib.make_aggregation(aggregation, name='aggregation')

  def temporal_features(self, observation):
    """Temporal encoder output, `[B, P, T, D]`: token (p, t) saw only patch p."""
    x = self.embedding(observation)                                 # [B, T, P, D]
    stack, patches, width = (self.embedding.stack_size, self.embedding.num_patches,
                             self.variant.width)
    x = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, stack, width])  # [B*P, T, D]
    return tf.reshape(self.temporal_encoder(x), [-1, patches, stack, width])

  def call(self, observation, training=False):
    del training
    x = self.temporal_features(observation)                         # [B, P, T, D]
    stack, patches, width = (self.embedding.stack_size, self.embedding.num_patches,
                             self.variant.width)
    if self.aggregation == 'mean':
      x = tf.reduce_mean(x, axis=2)                                 # [B, P, D]
      return self.aggregate(self.spatial_encoder(x))                # [B, D]
    x = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, patches, width])  # [B*T, P, D]
    x = tf.reshape(self.spatial_encoder(x), [-1, stack * patches, width])  # [B, T*P, D]
    return self.aggregate(x)
