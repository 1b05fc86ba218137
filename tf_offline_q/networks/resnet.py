"""ResNet backbone of Scaled Q-learning (Kumar et al., 2023), for stacked Atari frames.

"Not the typical IMPALA architecture ... keep track of spatial information in
the image": a ResNet v1 whose global average pooling is replaced by learned
spatial embeddings, with GroupNorm instead of BatchNorm. Layer by layer (the
public JAX form of the same lab, rail-berkeley/serl `vision/resnet_v1.py`):

  uint8 [B, 84, 84, 4] / 255
  stem   conv 7x7/2, 64 (no bias), GroupNorm(4), ReLU, max-pool 3x3/2   -> [B, 21, 21, 64]
  stage i = 0..3, `stage_sizes[i]` blocks of width 64 * 2^i; the first block
         of stages 1..3 has stride 2                                     -> [B, 3, 3, C]
         basic block (ResNet-18/34):  3x3 -> GN -> ReLU -> 3x3 -> GN, C = 512
         bottleneck  (ResNet-50/101): 1x1 -> GN -> ReLU -> 3x3 (stride) -> GN
                                      -> ReLU -> 1x1 (4x width) -> GN, C = 2048
         residual: identity, or 1x1 conv (stride) + GN when the shape changes;
         ReLU after the sum
  learned spatial embeddings (`SpatialLearnedEmbeddings`):
         out[b, c, k] = sum_{h, w} f[b, h, w, c] kernel[h, w, c, k],  K = 8
         flattened to [B, C * K], then dropout 0.1                       -> [B, C * K]

Every convolution has no bias (GroupNorm follows each), He-normal kernels; the
last GroupNorm of a bottleneck starts with scale 0 (each residual branch starts
as the identity), as in the reference. All convolutions pad 'SAME' (the
reference's explicit 3-pixel stem padding gives the same 42 x 42 output).
The torso's parameter count is exactly torchvision's ResNet-18/34/50/101
without its classifier (GroupNorm has the same scale and offset per channel as
BatchNorm) plus 7 * 7 * 64 for the fourth input channel.

The Q-network head on top (`q_network.py`) is `head_hidden` dense ReLU layers,
then the C51 output layer (one per game with a multi-game observation,
`multi_head.py`). Variants are named data, big_vision style:

  variant    block       stage_sizes    width  K  head_hidden  dropout  C * K
  resnet18   basic       (2, 2, 2, 2)   64     8  (640,)       0.1      4,096
  resnet34   basic       (3, 4, 6, 3)   64     8  (640,)       0.1      4,096
  resnet50   bottleneck  (3, 4, 6, 3)   64     8  (640,)       0.1      16,384
  resnet101  bottleneck  (3, 4, 23, 3)  64     8  (640,)       0.1      16,384
  micro      basic       (1, 1, 1, 1)   8      8  (64,)        0.1      512

Why 640 (our choice; the talk gives only "~80M" for the largest model): the
talk's model is one network for 40 games, so its count includes 40 C51 heads
of 18 actions x 51 atoms. The ResNet-101 torso (42.50M) and its spatial
embedding (3 * 3 * 2048 * 8 = 0.15M) leave about 37.4M for the head; with one
hidden layer of h units that is 16,384 h (shared) + 40 * 918 h (the per-game
output layers), so h = 37.4M / 53,105 = 703. 640 (5 x 128, a multiple of the
TPU lane width) is the nearest multiple of 128 and gives 76.7M with 40 games
(-4% from 80M); `python -m tf_offline_q.networks.summary` prints every
variant. The input is fixed at 84 x 84 x 4 (the DQN preprocessing).
"""
import dataclasses
from typing import List, Sequence, Tuple

import tensorflow as tf

GROUPS = 4  # GroupNorm groups (the reference's 4)

BLOCKS = ('basic', 'bottleneck')


@dataclasses.dataclass(frozen=True)
class Variant:
  """Torso and head sizes of one named ResNet variant."""
  block: str                      # 'basic' or 'bottleneck'
  stage_sizes: Tuple[int, ...]    # blocks per stage; stage i has width * 2**i channels
  width: int = 64                 # channels of the stem and of the first stage
  num_spatial_features: int = 8   # K of the learned spatial embeddings
  head_hidden: Tuple[int, ...] = (640,)
  dropout: float = 0.1            # after the spatial embeddings

  @property
  def expansion(self) -> int:
    """Output channels of a block per unit of its width (4 for bottleneck blocks)."""
    return 4 if self.block == 'bottleneck' else 1

  @property
  def output_channels(self) -> int:
    """C of the last stage's feature map."""
    return self.width * 2 ** (len(self.stage_sizes) - 1) * self.expansion


VARIANTS = {
    'resnet18': Variant('basic', (2, 2, 2, 2)),
    'resnet34': Variant('basic', (3, 4, 6, 3)),
    'resnet50': Variant('bottleneck', (3, 4, 6, 3)),
    'resnet101': Variant('bottleneck', (3, 4, 23, 3)),
    'micro': Variant('basic', (1, 1, 1, 1), width=8, head_hidden=(64,)),
}


def get_variant(name) -> Variant:
  """Returns the `Variant` called `name` (a `Variant` passes through)."""
  if isinstance(name, Variant):
    variant = name
  elif name not in VARIANTS:
    raise ValueError(f'Unknown ResNet variant {name!r}; known variants: {sorted(VARIANTS)}')
  else:
    variant = VARIANTS[name]
  if variant.block not in BLOCKS:
    raise ValueError(f'Unknown ResNet block {variant.block!r}; expected one of {BLOCKS}')
  if variant.width % GROUPS:
    raise ValueError(f'ResNet width={variant.width} must be a multiple of the {GROUPS} '
                     'GroupNorm groups')
  return variant


def _same(size: int, stride: int) -> int:
  return -(-size // stride)  # ceil: 'SAME' padding


def conv_plan(variant, frame_shape: Sequence[int] = (84, 84), stack: int = 4) -> List[tuple]:
  """Every convolution of the torso, in order: `(kernel, stride, in_channels,
  out_channels, out_height, out_width)`. The last entry's output is the final
  feature map. Used for FLOP counts (bench/networks.py) and shape checks."""
  v = get_variant(variant)
  h, w = _same(int(frame_shape[0]), 2), _same(int(frame_shape[1]), 2)
  plan = [(7, 2, stack, v.width, h, w)]
  h, w = _same(h, 2), _same(w, 2)                                  # max-pool 3x3/2
  channels = v.width
  for i, size in enumerate(v.stage_sizes):
    filters = v.width * 2 ** i
    for j in range(size):
      stride = 2 if i > 0 and j == 0 else 1
      out = filters * v.expansion
      ho, wo = _same(h, stride), _same(w, stride)
      if v.block == 'basic':
        plan += [(3, stride, channels, filters, ho, wo), (3, 1, filters, filters, ho, wo)]
      else:
        plan += [(1, 1, channels, filters, h, w), (3, stride, filters, filters, ho, wo),
                 (1, 1, filters, out, ho, wo)]
      if stride != 1 or channels != out:
        plan.append((1, stride, channels, out, ho, wo))          # projection shortcut
      h, w, channels = ho, wo, out
  return plan


def _conv(filters, kernel, stride=1, name=None):
  return tf.keras.layers.Conv2D(filters, kernel, strides=stride, padding='same', use_bias=False,
                                kernel_initializer='he_normal', name=name)


def _norm(name=None, zero_scale=False):
  return tf.keras.layers.GroupNormalization(
      groups=GROUPS, epsilon=1e-5, gamma_initializer='zeros' if zero_scale else 'ones', name=name)


class ResidualBlock(tf.keras.layers.Layer):
  """Basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4) block, `[B, H, W, Cin] ->
  [B, H / stride, W / stride, filters * expansion]`."""

  def __init__(self, filters: int, stride: int, bottleneck: bool, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.stride, self.bottleneck = filters, stride, bottleneck
    out = filters * (4 if bottleneck else 1)
    if bottleneck:
      self.convs = [_conv(filters, 1, name='conv1'), _conv(filters, 3, stride, name='conv2'),
                    _conv(out, 1, name='conv3')]
      self.norms = [_norm('norm1'), _norm('norm2'), _norm('norm3', zero_scale=True)]
    else:
      self.convs = [_conv(filters, 3, stride, name='conv1'), _conv(filters, 3, name='conv2')]
      self.norms = [_norm('norm1'), _norm('norm2')]
    self.out_channels = out

  def build(self, input_shape):
    self.projection = None
    if self.stride != 1 or int(input_shape[-1]) != self.out_channels:
      self.projection = _conv(self.out_channels, 1, self.stride, name='conv_proj')
      self.projection_norm = _norm('norm_proj')
    super().build(input_shape)

  def call(self, x):
    y = x
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      y = norm(conv(y))
      if i < len(self.convs) - 1:
        y = tf.nn.relu(y)
    shortcut = x if self.projection is None else self.projection_norm(self.projection(x))
    return tf.nn.relu(shortcut + y)


class SpatialLearnedEmbeddings(tf.keras.layers.Layer):
  """`[B, H, W, C] -> [B, C * K]`: K learned spatial maps per channel.

      out[b, c, k] = sum_{h, w} f[b, h, w, c] kernel[h, w, c, k]

  flattened channel-major (index c * K + k). Unlike global average pooling
  (kernel = 1 / (H W) everywhere, K = 1) each channel keeps where its features
  are. The kernel is LeCun-normal on its `[H, W, C, K]` shape, as in the reference.
  """

  def __init__(self, num_features: int = 8, **kwargs):
    super().__init__(**kwargs)
    self.num_features = num_features

  def build(self, input_shape):
    _, height, width, channels = (int(d) for d in input_shape)
    self.kernel = self.add_weight(
        name='kernel', shape=(height, width, channels, self.num_features),
        initializer='lecun_normal')
    super().build(input_shape)

  def call(self, features):
    out = tf.einsum('bhwc,hwck->bck', features, self.kernel)
    return tf.reshape(out, [-1, out.shape[1] * out.shape[2]])


class ResNet(tf.keras.layers.Layer):
  """`[B, H, W, T]` stacked frames -> `[B, C * K]` features (see the module docstring)."""

  def __init__(self, variant='resnet34', **kwargs):
    super().__init__(**kwargs)
    self.variant = get_variant(variant)
    v = self.variant
    self.stem = _conv(v.width, 7, 2, name='conv_init')
    self.stem_norm = _norm('norm_init')
    self.blocks = []
    for i, size in enumerate(v.stage_sizes):
      for j in range(size):
        stride = 2 if i > 0 and j == 0 else 1
        self.blocks.append(ResidualBlock(v.width * 2 ** i, stride, v.block == 'bottleneck',
                                         name=f'stage{i + 1}_block{j + 1}'))
    self.spatial_embedding = SpatialLearnedEmbeddings(v.num_spatial_features,
                                                      name='spatial_embedding')
    self.dropout = tf.keras.layers.Dropout(v.dropout, name='dropout')

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f'ResNet input must be [batch, height, width, stack]; got {input_shape}')
    super().build(input_shape)

  def feature_map(self, observation):
    """The last stage's output, `[B, H', W', C]` (H' = 3 for 84-pixel frames)."""
    x = tf.cast(observation, tf.float32)
    if observation.dtype == tf.uint8:
      x = x / 255.0
    x = tf.nn.relu(self.stem_norm(self.stem(x)))
    x = tf.nn.max_pool2d(x, 3, 2, 'SAME')
    for block in self.blocks:
      x = block(x)
    return x

  def call(self, observation, training=False):
    return self.dropout(self.spatial_embedding(self.feature_map(observation)),
                        training=training)
