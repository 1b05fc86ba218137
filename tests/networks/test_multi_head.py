"""Multi-headed Q-networks: game-id head selection, parameter counts, specs, copies."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from tf_offline_q import specs
from tf_offline_q.networks import multi_head
from tf_offline_q.networks import q_network
from tf_offline_q.networks import resnet

ACT = specs.action_spec(18)
MICRO = dataclasses.replace(resnet.VARIANTS['micro'], dropout=0.0)


def _observation(game_ids, seed=0):
  batch = len(game_ids)
  frames = np.random.default_rng(seed).integers(0, 256, (batch, 84, 84, 4))
  return {'frames': tf.constant(frames, tf.uint8), 'game_id': tf.constant(game_ids, tf.int32)}


def _net(num_games=3, cls=q_network.C51QNetwork, **kwargs):
  args = dict(backbone='resnet', variant=MICRO)
  args.update(kwargs)
  net = cls(multi_head.observation_spec(num_games), ACT, **args)
  net.create_variables()
  return net


def test_observation_spec_carries_the_game():
  spec = multi_head.observation_spec(5)
  assert spec['frames'] == specs.observation_spec()
  assert spec['game_id'].dtype == tf.int32 and spec['game_id'].shape == ()
  assert (int(spec['game_id'].minimum), int(spec['game_id'].maximum)) == (0, 4)
  assert multi_head.num_games(spec) == 5 and multi_head.num_games(specs.observation_spec()) is None
  assert _net(5).num_games == 5
  plain = q_network.C51QNetwork(specs.observation_spec(), ACT, backbone='resnet', variant='micro')
  assert plain.num_games is None


@pytest.mark.parametrize('cls,outputs', [(q_network.C51QNetwork, (18, 51)),
                                         (q_network.ActionLogitsNetwork, (18,))])
def test_each_example_uses_its_games_head(cls, outputs):
  net = _net(4, cls)
  game_ids = [2, 0, 3, 2, 1]
  obs = _observation(game_ids)
  out = net(obs)[0].numpy()
  assert out.shape == (5,) + outputs
  phi = net.features(obs).numpy()
  heads = net.layers[-1]
  for b, g in enumerate(game_ids):
    own = phi[b] @ heads.kernel.numpy()[:, g] + heads.bias.numpy()[g]
    np.testing.assert_allclose(out[b].reshape(-1), own, rtol=1e-5, atol=1e-5)
  # The same frames under another game id: same torso features, another head.
  other = dict(obs, game_id=tf.constant([0, 1, 2, 3, 0]))
  np.testing.assert_allclose(net.features(other), phi, atol=1e-6)
  assert not np.isclose(net(other)[0].numpy(), out).all(axis=tuple(range(1, out.ndim))).any()


def test_heads_start_like_dense_layers_and_differ():
  heads = _net(3).layers[-1]
  kernel = heads.kernel.numpy()                                   # [64, 3, 918]
  limit = np.sqrt(6.0 / (64 + 918))
  assert kernel.shape == (64, 3, 918) and np.abs(kernel).max() <= limit
  np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3), rtol=0.05)
  assert not np.allclose(kernel[:, 0], kernel[:, 1])
  np.testing.assert_array_equal(heads.bias.numpy(), 0.0)


@pytest.mark.parametrize('backbone,variant', [('resnet', MICRO), ('vit_ts', 'micro'),
                                              ('convnet', None)])
def test_every_game_adds_exactly_one_output_layer(backbone, variant):
  counts = {}
  for games in (1, 4):
    net = _net(games, backbone=backbone, variant=variant or 'micro', aggregation='mean')
    counts[games] = sum(int(v.shape.num_elements()) for v in net.variables)
    width = int(net.layers[-1].kernel.shape[0])
  single = q_network.C51QNetwork(specs.observation_spec(), ACT, backbone=backbone,
                                 variant=variant or 'micro', aggregation='mean')
  single.create_variables()
  assert counts[1] == sum(int(v.shape.num_elements()) for v in single.variables)
  assert counts[4] - counts[1] == 3 * (width * 918 + 918)


def test_copy_gives_an_independent_multi_game_target():
  net = _net(3)
  target = net.copy(name='TargetNetwork')
  target.create_variables()
  assert target.num_games == 3 and len(target.variables) == len(net.variables)
  assert not {id(v) for v in net.variables} & {id(v) for v in target.variables}
  for v, t in zip(net.variables, target.variables):
    t.assign(v)
  obs = _observation([0, 1, 2])
  np.testing.assert_allclose(target(obs)[0], net(obs)[0], atol=1e-6)


def test_xla_forward_equals_eager():
  net = _net(3)
  obs = _observation([2, 0, 1, 1])
  compiled = tf.function(lambda x: net(x)[0], jit_compile=True)(obs)
  np.testing.assert_allclose(compiled, net(obs)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('spec,match', [
    ({'frames': specs.observation_spec()}, "exactly the keys 'frames' and 'game_id'"),
    ({'frames': specs.observation_spec(), 'game_id': tf.TensorSpec([], tf.int32)},
     'BoundedTensorSpec'),
    ({'frames': specs.observation_spec(),
      'game_id': tensor_spec.BoundedTensorSpec([], tf.int32, 1, 3)}, 'minimum 0'),
    ({'frames': specs.observation_spec(),
      'game_id': tensor_spec.BoundedTensorSpec([2], tf.int32, 0, 3)}, 'scalar integer'),
    ({'frames': tf.TensorSpec([84, 84], tf.uint8),
      'game_id': tensor_spec.BoundedTensorSpec([], tf.int32, 0, 3)}, 'observation spec'),
])
def test_bad_multi_game_specs_are_clear_errors(spec, match):
  with pytest.raises(ValueError, match=match):
    q_network.C51QNetwork(spec, ACT, backbone='resnet', variant='micro')


def test_game_id_out_of_range_is_an_error():
  net = _net(2)
  with pytest.raises(tf.errors.InvalidArgumentError, match='not in'):
    net(_observation([0, 2]))
