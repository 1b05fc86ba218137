"""ResNet backbone: torchvision-exact torso sizes, shapes, spatial embeddings, GroupNorm, dropout."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.agents import helpers
from tf_offline_q import specs
from tf_offline_q.agents import cql_c51
from tf_offline_q.networks import q_network
from tf_offline_q.networks import resnet
from tf_offline_q.networks import summary

OBS = specs.observation_spec()
ACT = specs.action_spec(18)
# torchvision's ResNet parameter counts without the 1000-way classifier, plus
# 7 * 7 * 64 stem weights for the fourth input channel (GroupNorm has the same
# per-channel scale and offset as BatchNorm; no convolution has a bias).
TORCHVISION = {'resnet18': 11_689_512 - 513_000, 'resnet34': 21_797_672 - 513_000,
               'resnet50': 25_557_032 - 2_049_000, 'resnet101': 44_549_160 - 2_049_000}
NO_DROPOUT = dataclasses.replace(resnet.VARIANTS['micro'], dropout=0.0)


def _observation(batch=2, seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, (batch, 84, 84, 4)), tf.uint8)


def _count(variables):
  return sum(int(v.shape.num_elements()) for v in variables)


@pytest.mark.parametrize('variant', ['resnet18', 'resnet34', 'resnet50', 'resnet101'])
def test_full_size_variants_shapes_and_parameter_counts(variant):
  """Built without training: torso, spatial embedding and head sizes, feature map 3x3xC."""
  net = q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant=variant)
  net.create_variables()
  body = net.layers[0]
  v = resnet.get_variant(variant)
  channels = 512 if v.block == 'basic' else 2048
  embedding = body.spatial_embedding.kernel
  assert embedding.shape == (3, 3, channels, 8)
  torso = _count(body.variables) - _count([embedding])
  assert torso == TORCHVISION[variant] + 7 * 7 * 64
  features = channels * 8
  head = features * 640 + 640 + 640 * 918 + 918
  assert _count(net.variables) == torso + 9 * channels * 8 + head
  plan = resnet.conv_plan(variant)
  assert plan[-1][3:] == (channels, 3, 3) and len(plan) == len(_convs(body))
  assert _count([c.kernel for c in _convs(body)]) == sum(k * k * i * o for k, _, i, o, _, _ in plan)
  assert body(_observation(1)).shape == (1, features)


def _convs(layer):
  return [sub for sub in layer._flatten_layers() if isinstance(sub, tf.keras.layers.Conv2D)]


def test_only_group_norm_with_four_groups_and_no_batch_norm():
  body = resnet.ResNet('resnet50')
  body(_observation(1))
  layers = list(body._flatten_layers())
  norms = [x for x in layers if isinstance(x, tf.keras.layers.GroupNormalization)]
  assert norms and all(n.groups == 4 for n in norms)
  assert not [x for x in layers if isinstance(x, tf.keras.layers.BatchNormalization)]
  # 1 stem norm + 3 per bottleneck block + 1 per projection (one per stage).
  assert len(norms) == 1 + 3 * 16 + 4 and len(_convs(body)) == len(norms)
  assert all(not c.use_bias for c in _convs(body))


def test_examples_are_normalised_independently_of_the_batch():
  """GroupNorm, unlike BatchNorm in training, never mixes examples."""
  net = q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant=NO_DROPOUT)
  obs = _observation(4)
  together = net(obs, training=True)[0]
  alone = net(obs[:1], training=True)[0]
  np.testing.assert_allclose(alone, together[:1], rtol=1e-4, atol=1e-5)


def test_spatial_embedding_matches_numpy():
  layer = resnet.SpatialLearnedEmbeddings(num_features=3)
  f = np.random.default_rng(1).normal(size=(2, 4, 5, 6)).astype(np.float32)
  got = layer(tf.constant(f)).numpy()
  kernel = layer.kernel.numpy()
  assert kernel.shape == (4, 5, 6, 3) and got.shape == (2, 6 * 3)
  expected = np.zeros((2, 6, 3), np.float32)
  for b in range(2):
    for c in range(6):
      for k in range(3):
        expected[b, c, k] = sum(f[b, h, w, c] * kernel[h, w, c, k]
                                for h in range(4) for w in range(5))
  np.testing.assert_allclose(got, expected.reshape(2, 18), rtol=1e-5, atol=1e-5)
  # Each channel keeps spatial information: moving a feature moves the output.
  shifted = np.roll(f, 1, axis=1)
  assert not np.allclose(layer(tf.constant(shifted)), got, atol=1e-3)


def test_micro_shapes_and_bc_network():
  net = q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant='micro')
  logits, _ = net(_observation(3))
  assert logits.shape == (3, 18, 51)
  assert net.features(_observation(3)).shape == (3, 64)
  assert net.layers[0](_observation(3)).shape == (3, 64 * 8)
  bc = q_network.ActionLogitsNetwork(OBS, ACT, backbone='resnet', variant='micro')
  assert bc(_observation(3))[0].shape == (3, 18)
  # Other frame sizes and stacks work ('SAME' padding).
  other = q_network.C51QNetwork(specs.observation_spec((42, 30), 2), ACT, backbone='resnet',
                                variant='micro')
  small = tf.zeros([2, 42, 30, 2], tf.uint8)
  assert other(small)[0].shape == (2, 18, 51)
  assert resnet.conv_plan('micro', (42, 30), 2)[-1][-2:] == tuple(
      other.layers[0].feature_map(small).shape[1:3])


@pytest.mark.parametrize('variant', [
    NO_DROPOUT, resnet.Variant('bottleneck', (1, 1), width=4, head_hidden=(16,), dropout=0.0)])
def test_gradients_reach_every_variable(variant):
  net = q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant=variant)
  net.create_variables()
  for layer in net.layers[0]._flatten_layers():
    if isinstance(layer, tf.keras.layers.GroupNormalization):
      layer.gamma.assign(tf.ones_like(layer.gamma))  # bottlenecks start the last scale at 0
  with tf.GradientTape() as tape:
    logits, _ = net(_observation(4), training=True)
    loss = tf.reduce_sum(tf.nn.log_softmax(logits)[:, :, 7]) + tf.reduce_sum(logits ** 2)
  grads = tape.gradient(loss, net.trainable_variables)
  assert len(net.trainable_variables) == len(net.variables) > 0
  for var, grad in zip(net.trainable_variables, grads):
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, var.name


def test_bottleneck_residual_branches_start_as_identity():
  block = resnet.ResidualBlock(4, 1, bottleneck=True)
  x = tf.nn.relu(tf.random.normal([2, 5, 5, 16]))
  np.testing.assert_allclose(block(x), x, atol=1e-6)


def test_dropout_only_in_training():
  net = q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant='micro')
  body = net.layers[0]
  obs = _observation(8)
  eval_a, eval_b = body(obs).numpy(), body(obs, training=False).numpy()
  np.testing.assert_array_equal(eval_a, eval_b)
  train = body(obs, training=True).numpy()
  dropped = (train == 0) & (eval_a != 0)
  assert 0.05 < dropped.mean() < 0.15
  np.testing.assert_allclose(train[train != 0], eval_a[train != 0] / 0.9, rtol=1e-5)


def test_xla_forward_equals_eager():
  net = q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant='micro')
  obs = _observation(3)
  eager = net(obs)[0]
  compiled = tf.function(lambda x: net(x)[0], jit_compile=True)(obs)
  np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)


def test_feature_normalization_and_dr3_with_the_resnet():
  net = q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant='micro',
                              feature_normalization=True)
  logits, phi = net.call_with_features(_observation(3))
  np.testing.assert_allclose(tf.norm(phi, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(logits, net(_observation(3))[0], atol=1e-6)
  agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, ACT, net, dr3_weight=0.1,
                              learning_rate=1e-3)
  agent.initialize()
  info = agent.train(helpers.batch(4))  # eager: tracing would cost more than it tests
  assert 0 < float(info.extra.dr3_loss) <= 1.0  # |phi . phi'| of unit vectors
  assert np.isfinite(float(info.loss)) and int(agent.train_step_counter) == 1


def test_unknown_variant_is_a_clear_error():
  with pytest.raises(ValueError, match='Unknown ResNet variant'):
    q_network.C51QNetwork(OBS, ACT, backbone='resnet', variant='S/14')
  with pytest.raises(ValueError, match='multiple of the 4 GroupNorm groups'):
    resnet.ResNet(resnet.Variant('basic', (1,), width=6))


def test_summary_prints_resnet_rows_beside_the_talk(capsys):
  rows = summary.resnet_table(['micro'], num_games=3)
  variant, one, every, talk = rows[0]
  assert variant == 'micro' and talk is None
  assert every - one == 2 * (64 * 918 + 918)
  assert one == summary.count_parameters('resnet', 'none', 'micro')
  summary.main(['--variant', 'micro', '--resnet_variants', 'micro', '--num_games', '2'])
  out = capsys.readouterr().out
  assert '| micro |' in out and 'Ours, 2 games' in out
