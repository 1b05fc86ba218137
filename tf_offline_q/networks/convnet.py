"""Nature-DQN convnet baseline (Mnih et al., 2015), as used by Agarwal et al. (2020).

  conv 32 @ 8x8 stride 4, ReLU
  conv 64 @ 4x4 stride 2, ReLU
  conv 64 @ 3x3 stride 1, ReLU
  flatten, dense 512, ReLU

Input `[B, 84, 84, 4]` (uint8 scaled to [0, 1]); output `[B, 512]`. With 18
actions x 51 atoms on top this is 2.16M parameters, not the 63.5M of the
paper's Table 1: a three-conv + 512 network cannot reach that size (its one
large layer, 3136 x 512, is 1.6M), so the paper's row must describe a
different or wider network. We build the network the paper's text describes.
"""
import tensorflow as tf


class NatureConvNet(tf.keras.layers.Layer):
  """`[B, H, W, T] -> [B, 512]` Nature-DQN torso."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.convs = [
        tf.keras.layers.Conv2D(32, 8, strides=4, activation='relu', name='conv1'),
        tf.keras.layers.Conv2D(64, 4, strides=2, activation='relu', name='conv2'),
        tf.keras.layers.Conv2D(64, 3, strides=1, activation='relu', name='conv3'),
    ]
    self.flatten = tf.keras.layers.Flatten()
    self.dense = tf.keras.layers.Dense(512, activation='relu', name='dense')

  def build(self, input_shape):
    height, width = int(input_shape[1]), int(input_shape[2])
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
      height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    if height < 1 or width < 1:
      raise ValueError(f'Observation frames of {input_shape[1]}x{input_shape[2]} pixels are too '
                       'small for the Nature-DQN convnet (needs at least 36x36).')
    super().build(input_shape)

  def call(self, observation, training=False):
    del training
    x = tf.cast(observation, tf.float32)
    if observation.dtype == tf.uint8:
      x = x / 255.0
    for conv in self.convs:
      x = conv(x)
    return self.dense(self.flatten(x))
