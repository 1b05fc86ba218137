"""Multi-game observations and the multi-headed Q output (Scaled Q-learning).

One network plays many games: a shared torso and one output head per game.
The game of each example travels inside the observation, so networks, agents,
Reverb items, saved policies and drivers all carry it without extra plumbing:

  observation = {'frames':  uint8 [84, 84, 4]   the usual stacked frames
                 'game_id': int32 []            0 .. num_games - 1}

`num_games` is read from the spec: `maximum + 1` of the bounded `game_id` spec.
A plain frames spec (`specs.observation_spec()`) keeps the single-game
networks exactly as before. All games share one action set (the full one: 18
ALE actions, 6 MinAtar), so every head is `[num_actions, num_atoms]`.

Head selection (`GameHeads`): the G output layers are one kernel `[F, G, O]`;
the network computes all G heads with one matmul `[B, F] @ [F, G * O]` and
gathers each example's own head, `[B, G, O] -> [B, O]`. We chose this over
grouping the batch by game (dynamic partition, one matmul per game, stitch)
or gathering a weight matrix per example: it has static shapes (XLA, TPU,
MirroredStrategy), one large matmul, and its extra work is small beside the
torso: G * F * O multiply-adds per example (40 games x 640 x 918 = 23.5M, 1.7%
of the 1.37 GMAC of the ResNet-101 convolutions at 84 x 84). Only the gathered
head gets a gradient: the other heads' gradient is exactly zero.
A policy for one game is the same network fed that game's id.
"""
from typing import Optional, Sequence

import tensorflow as tf
from tf_agents.specs import tensor_spec

from tf_offline_q import specs

FRAMES = 'frames'
GAME_ID = 'game_id'


def observation_spec(num_games: int, frame_shape: Sequence[int] = specs.FRAME_SHAPE,
                     stack_size: int = specs.STACK_SIZE):
  """`{'frames': uint8 [H, W, T], 'game_id': int32 [] in [0, num_games)}`."""
  if num_games < 1:
    raise ValueError(f'num_games must be >= 1, got {num_games}')
  return {
      FRAMES: specs.observation_spec(frame_shape, stack_size),
      GAME_ID: tensor_spec.BoundedTensorSpec(shape=(), dtype=tf.int32, minimum=0,
                                             maximum=num_games - 1, name=GAME_ID),
  }


def num_games(observation_spec_) -> Optional[int]:
  """Number of games of a multi-game observation spec; None for a frames spec."""
  if not isinstance(observation_spec_, dict):
    return None
  if set(observation_spec_) != {FRAMES, GAME_ID}:
    raise ValueError(f'A multi-game observation spec has exactly the keys {FRAMES!r} and '
                     f'{GAME_ID!r}; got {sorted(observation_spec_)}')
  game = observation_spec_[GAME_ID]
  if (game.shape.rank != 0 or not game.dtype.is_integer
      or not hasattr(game, 'maximum') or int(game.minimum) != 0):
    raise ValueError(f'{GAME_ID!r} must be a scalar integer BoundedTensorSpec with minimum 0 '
                     f'and maximum num_games - 1 (see multi_head.observation_spec); got {game}')
  return int(game.maximum) + 1


def frames_spec(observation_spec_):
  """The frames part of a (multi-game or plain) observation spec."""
  return observation_spec_[FRAMES] if num_games(observation_spec_) else observation_spec_


def split(observation):
  """`(frames [B, H, W, T], game_id [B] or None)` of a batched observation."""
  if isinstance(observation, dict):
    return observation[FRAMES], observation[GAME_ID]
  return observation, None


class GameHeads(tf.keras.layers.Layer):
  """`num_games` linear heads: `phi [B, F], game_id [B] -> [B, output_size]`,
  row b computed with head `game_id[b]` (all heads in one matmul, then a gather).

  Variables: `kernel [F, num_games, output_size]`, `bias [num_games, output_size]`;
  head g is `kernel[:, g]`, `bias[g]`, initialised like a `Dense(output_size)`
  (Glorot-uniform on `[F, output_size]`, zero bias).
  """

  def __init__(self, num_games_: int, output_size: int, **kwargs):
    super().__init__(**kwargs)
    self.num_games = num_games_
    self.output_size = output_size

  def build(self, input_shape):
    features = int(input_shape[-1])
    limit = (6.0 / (features + self.output_size)) ** 0.5
    self.kernel = self.add_weight(
        name='kernel', shape=(features, self.num_games, self.output_size),
        initializer=tf.keras.initializers.RandomUniform(-limit, limit))
    self.bias = self.add_weight(name='bias', shape=(self.num_games, self.output_size),
                                initializer='zeros')
    super().build(input_shape)

  def all_heads(self, phi):
    """Every head's output, `[B, num_games, output_size]`."""
    kernel = tf.reshape(self.kernel, [phi.shape[-1], self.num_games * self.output_size])
    out = tf.reshape(tf.matmul(phi, kernel), [-1, self.num_games, self.output_size])
    return out + self.bias

  def call(self, phi, game_id):
    return tf.gather(self.all_heads(phi), tf.cast(game_id, tf.int32), axis=1, batch_dims=1)
