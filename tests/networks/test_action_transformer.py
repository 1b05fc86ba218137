"""ActionTransformerQNetwork: shapes, [0, 1] outputs, causality over dimensions, encoders."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from tf_offline_q.networks import action_transformer

ACT = tensor_spec.BoundedTensorSpec([3], tf.float32, -1.0, 1.0, name='action')
STATE = tf.TensorSpec([5], tf.float32, name='observation')
TINY = dict(num_bins=4, width=16, depth=2, num_heads=2, dropout=0.0, encoder_hidden=(16,))


def _bins(batch, dims=3, num_bins=4, seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, num_bins, (batch, dims)), tf.int32)


def _state(batch, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(size=(batch, 5)), tf.float32)


def test_state_network_outputs_every_bin_of_every_dimension_in_0_1():
  net = action_transformer.ActionTransformerQNetwork(STATE, ACT, **TINY)
  q, state = net((_state(6), _bins(6)))
  assert q.shape == (6, 3, 4) and state == ()
  assert (q.numpy() > 0).all() and (q.numpy() < 1).all()
  np.testing.assert_allclose(net.q_values(net.encode(_state(6)), _bins(6)), q, atol=1e-6)
  assert net.num_bins == 4 and net.action_dims == 3


def test_output_i_depends_only_on_the_bins_of_earlier_dimensions():
  net = action_transformer.ActionTransformerQNetwork(STATE, ACT, **TINY)
  encoding = net.encode(_state(4))
  bins = _bins(4).numpy()
  base = net.q_values(encoding, bins).numpy()
  for j in range(3):
    changed = bins.copy()
    changed[:, j] = (changed[:, j] + 1) % 4
    q = net.q_values(encoding, changed).numpy()
    np.testing.assert_array_equal(q[:, :j + 1], base[:, :j + 1])  # dims <= j: unaffected
    if j < 2:
      assert np.abs(q[:, j + 1:] - base[:, j + 1:]).min() > 0     # later dims: affected


def test_micro_vit_image_encoder_builds_and_runs():
  spec = tensor_spec.BoundedTensorSpec([28, 28, 2], tf.uint8, 0, 255, name='observation')
  net = action_transformer.ActionTransformerQNetwork(spec, ACT, backbone='vit', variant='micro',
                                                     aggregation='mean', **TINY)
  frames = tf.constant(np.random.default_rng(1).integers(0, 256, (2, 28, 28, 2)), tf.uint8)
  q, _ = net((frames, _bins(2)))
  assert q.shape == (2, 3, 4)
  assert any('vit' in v.name for v in net.trainable_variables)
  other = tf.constant(np.random.default_rng(2).integers(0, 256, (2, 28, 28, 2)), tf.uint8)
  assert not np.allclose(net((other, _bins(2)))[0], q)  # the frames matter
  with pytest.raises(ValueError, match='patch_size=14'):
    action_transformer.ActionTransformerQNetwork(
        tensor_spec.BoundedTensorSpec([30, 28, 2], tf.uint8, 0, 255), ACT, variant='micro')


def test_dict_state_observations_are_concatenated_and_normalised():
  spec = {'observation': tf.TensorSpec([4], tf.float32), 'desired_goal': tf.TensorSpec([1],
                                                                                       tf.float32)}
  mean, std = np.arange(5.0), np.full(5, 2.0)
  net = action_transformer.ActionTransformerQNetwork(spec, ACT, observation_mean=mean,
                                                     observation_std=std, **TINY)
  flat = _state(3).numpy()
  obs = {'desired_goal': flat[:, :1], 'observation': flat[:, 1:]}  # tf.nest: sorted keys
  plain = action_transformer.ActionTransformerQNetwork(STATE, ACT, **TINY)
  plain.create_variables()
  net.create_variables()
  plain.set_weights(net.get_weights())
  np.testing.assert_allclose(net.encode(obs), plain.encode((flat - mean) / std), atol=1e-5)
  with pytest.raises(ValueError, match=r'shape \[5\]'):
    action_transformer.ActionTransformerQNetwork(spec, ACT, observation_mean=np.zeros(4), **TINY)


def test_copy_is_an_independent_network_and_bad_specs_are_clear_errors():
  net = action_transformer.ActionTransformerQNetwork(STATE, ACT, **TINY)
  net.create_variables()
  copy = net.copy(name='target')
  copy.create_variables()
  assert not set(id(v) for v in copy.variables) & set(id(v) for v in net.variables)
  assert len(copy.variables) == len(net.variables)
  with pytest.raises(ValueError, match=r'shape \[d_A\]'):
    action_transformer.ActionTransformerQNetwork(STATE, tf.TensorSpec([], tf.float32))
  with pytest.raises(ValueError, match='state observations must be float'):
    action_transformer.ActionTransformerQNetwork(tf.TensorSpec([5], tf.int32), ACT)
  with pytest.raises(ValueError, match='num_heads'):
    action_transformer.ActionTransformerQNetwork(STATE, ACT, width=10, num_heads=3)
