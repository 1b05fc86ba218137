"""Twin critic MLPs Q_1(s, a), Q_2(s, a) for continuous actions (QT, TD3, Diffusion-QL).

Each critic is an MLP on the concatenation [s, a]:

  Q_i(s, a) = W_4 act(W_3 act(W_2 act(W_1 [s; a])))          i = 1, 2

(QT's official `Critic`: 3 hidden layers of 256, Mish). The two critics share
nothing but their input. Leading dimensions are free: observations
`[..., obs_dim]` and actions `[..., act_dim]` give values `[..., 2]`.
Observations are used as given (the caller normalises them).
"""
from typing import Sequence

import gin
import tensorflow as tf
from tf_agents.networks import network


@gin.configurable
class TwinCriticNetwork(network.Network):
  """`(observation [..., obs_dim], action [..., act_dim]) -> Q [..., 2]`."""

  def __init__(self,
               observation_spec,
               action_spec,
               hidden_units: Sequence[int] = (256, 256, 256),
               activation: str = 'mish',
               name: str = 'TwinCriticNetwork'):
    """Args:
      observation_spec: float `[obs_dim]` spec; action_spec: float `[act_dim]`.
      hidden_units: widths of each critic's hidden layers.
      activation: hidden activation (Keras name; QT's code: Mish).
    """
    if len(observation_spec.shape) != 1 or len(action_spec.shape) != 1:
      raise ValueError(f'TwinCriticNetwork needs flat observations and actions, got '
                       f'{observation_spec} and {action_spec}')
    if not hidden_units or any(int(u) < 1 for u in hidden_units):
      raise ValueError(f'TwinCriticNetwork.hidden_units must be positive widths, got '
                       f'{hidden_units!r}')
    super().__init__(input_tensor_spec=(observation_spec, action_spec), state_spec=(),
                     name=name)
    self._critics = []
    for i in (1, 2):
      layers = [tf.keras.layers.Dense(int(u), activation=activation, name=f'q{i}_hidden_{j}')
                for j, u in enumerate(hidden_units)]
      layers.append(tf.keras.layers.Dense(1, name=f'q{i}_out'))
      self._critics.append(layers)

  def call(self, inputs, step_type=None, network_state=(), training=False):
    """Returns (Q float `[..., 2]` (Q_1, Q_2), ())."""
    del step_type, training
    observation, action = inputs
    x = tf.concat([tf.cast(observation, tf.float32), tf.cast(action, tf.float32)], axis=-1)
    values = []
    for layers in self._critics:
      h = x
      for layer in layers:
        h = layer(h)
      values.append(h)
    return tf.concat(values, axis=-1), network_state
