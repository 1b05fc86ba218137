"""Backbones and TF-Agents networks: shapes, specs, Table 1 counts, locality, gradients, XLA."""
import numpy as np
import pytest
import tensorflow as tf

from tf_offline_q import specs
from tf_offline_q.networks import aggregation
from tf_offline_q.networks import q_network
from tf_offline_q.networks import summary
from tf_offline_q.networks import vit
from tf_offline_q.networks import vit_ts

OBS = specs.observation_spec()
ACT = specs.action_spec(18)
CONFIGS = [('vit', 'none'), ('vit', 'mean'), ('vit', 'learned'), ('vit_ts', 'none'),
           ('vit_ts', 'mean'), ('vit_ts', 'learned'), ('convnet', 'none')]


def _observation(batch=2, shape=(84, 84, 4), seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, (batch,) + shape), tf.uint8)


def _micro(backbone, agg, obs_spec=OBS, **kwargs):
  net = q_network.C51QNetwork(obs_spec, ACT, backbone=backbone, variant='micro',
                              aggregation=agg, **kwargs)
  net.create_variables()
  return net


@pytest.mark.parametrize('backbone,agg', CONFIGS)
def test_c51_and_bc_output_shapes(backbone, agg):
  logits, state = _micro(backbone, agg)(_observation(3))
  assert logits.shape == (3, 18, 51) and state == ()
  bc = q_network.ActionLogitsNetwork(OBS, ACT, backbone=backbone, variant='micro', aggregation=agg)
  assert bc(_observation(3))[0].shape == (3, 18)


@pytest.mark.parametrize('backbone', ['vit', 'vit_ts'])
def test_feature_width_follows_aggregation(backbone):
  layer = q_network.make_backbone(backbone, 'micro', 'learned')
  assert layer(_observation()).shape == (2, 4 * 36 * 32)  # T * P * D
  assert q_network.make_backbone(backbone, 'micro', 'none')(_observation()).shape == (2, 32)


def test_other_frame_sizes_patch_sizes_and_stacks_work():
  spec = specs.observation_spec((42, 28), stack_size=3)
  logits, _ = _micro('vit_ts', 'learned', spec)(_observation(2, (42, 28, 3)))
  assert logits.shape == (2, 18, 51)
  layer = vit.ViT(vit.Variant(16, 1, 2, 32, patch_size=7, head_hidden=(8,)), 'learned')
  assert layer(_observation(1, (28, 35, 2))).shape == (1, 2 * 4 * 5 * 16)


def test_patch_size_that_does_not_divide_is_a_clear_error():
  with pytest.raises(ValueError, match='patch_size=14'):
    q_network.C51QNetwork(specs.observation_spec((84, 80)), ACT, backbone='vit', variant='micro')


@pytest.mark.parametrize('kwargs,match', [
    (dict(variant='XL/3'), 'Unknown model variant'),
    (dict(aggregation='max'), 'Unknown sequence aggregation'),
    (dict(backbone='densenet'), 'Unknown backbone'),
])
def test_bad_names_are_clear_errors(kwargs, match):
  args = dict(backbone='vit', variant='micro', aggregation='none')
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    q_network.C51QNetwork(OBS, ACT, **args)


def test_bad_observation_spec_is_a_clear_error():
  with pytest.raises(ValueError, match='observation spec'):
    q_network.C51QNetwork(tf.TensorSpec([84, 84], tf.uint8), ACT, variant='micro')


def test_parameter_counts_match_table_1():
  rows = {name: (ours, paper, diff) for name, ours, paper, diff in summary.table()}
  assert len(rows) == 7
  for name in ('ViT none', 'ViT mean', 'ViT learned', 'ViT-ts none', 'ViT-ts mean',
               'ViT-ts learned'):
    assert abs(rows[name][2]) < 0.05, (name, rows[name])
  # The Nature-DQN net: 8,224 + 32,832 + 36,928 conv + 1,606,144 dense + 470,934 output.
  assert rows['Convnet'][0] == 2_155_062
  # ViT-ts is the ViT plus exactly one more S/14 encoder.
  encoder = rows['ViT-ts none'][0] - rows['ViT none'][0]
  assert encoder == 12 * (2 * 768 + 4 * 384 * 384 + 4 * 384 + 2 * 384 * 1536 + 1536 + 384) + 768


def test_vit_ts_temporal_attention_is_per_patch_position():
  layer = vit_ts.ViTTS('micro', 'none')
  obs = _observation(1).numpy()
  before = layer.temporal_features(tf.constant(obs)).numpy()          # [1, P, T, D]
  changed = obs.copy()
  changed[0, 14:28, 28:42, 2] = 255 - changed[0, 14:28, 28:42, 2]  # patch (1, 2) of frame 2
  after = layer.temporal_features(tf.constant(changed)).numpy()
  moved = np.abs(after - before).max(axis=(0, 2, 3))                  # per patch position
  assert moved[1 * 6 + 2] > 1e-3
  np.testing.assert_array_equal(np.delete(moved, 1 * 6 + 2), 0.0)
  # ... whereas the plain ViT mixes every token.
  plain = vit.ViT('micro', 'learned')
  diff = np.abs(plain(tf.constant(changed)).numpy() - plain(tf.constant(obs)).numpy())
  assert (diff.reshape(4 * 36, 32).max(axis=1) > 0).all()


@pytest.mark.parametrize('backbone,agg', CONFIGS)
def test_gradients_reach_every_variable(backbone, agg):
  net = _micro(backbone, agg)
  with tf.GradientTape() as tape:
    logits, _ = net(_observation(4))
    loss = tf.reduce_sum(tf.nn.log_softmax(logits)[:, :, 7]) + tf.reduce_sum(logits ** 2)
  grads = tape.gradient(loss, net.trainable_variables)
  assert len(net.trainable_variables) == len(net.variables) > 0
  for var, grad in zip(net.trainable_variables, grads):
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, var.name


@pytest.mark.parametrize('backbone,agg', [('vit_ts', 'learned'), ('convnet', 'none')])
def test_copy_gives_an_independent_target_network(backbone, agg):
  net = _micro(backbone, agg)
  target = net.copy(name='TargetNetwork')
  target.create_variables()
  assert len(target.variables) == len(net.variables)
  online_ids = {id(v) for v in net.variables}
  assert not online_ids & {id(v) for v in target.variables}
  for v, t in zip(net.variables, target.variables):
    t.assign(v)
  obs = _observation()
  np.testing.assert_allclose(target(obs)[0], net(obs)[0], atol=1e-6)
  net.variables[0].assign_add(tf.ones_like(net.variables[0]))
  assert not np.allclose(target(obs)[0], net(obs)[0])


def test_network_builds_under_a_distribution_strategy():
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  with strategy.scope():
    net = _micro('vit_ts', 'mean')
    target = net.copy()
    target.create_variables()
  assert all(isinstance(v, tf.distribute.DistributedValues) for v in target.variables)
  out = strategy.run(lambda x: net(x)[0], args=(_observation(2),))
  assert strategy.experimental_local_results(out)[0].shape == (2, 18, 51)


@pytest.mark.parametrize('backbone,agg', [('vit', 'learned'), ('vit_ts', 'mean'),
                                          ('vit_ts', 'none'), ('convnet', 'none')])
def test_xla_forward_equals_eager(backbone, agg):
  net = _micro(backbone, agg)
  obs = _observation(3)
  eager = net(obs)[0]
  compiled = tf.function(lambda x: net(x)[0], jit_compile=True)(obs)
  np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)


def test_dr3_feature_normalization_gives_unit_norm_features():
  net = _micro('vit', 'mean', feature_normalization=True)
  logits, phi = net.call_with_features(_observation(3))
  np.testing.assert_allclose(tf.norm(phi, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(logits, net(_observation(3))[0], atol=1e-6)
  plain = _micro('vit', 'mean')
  assert not np.allclose(tf.norm(plain.features(_observation(3)), axis=-1), 1.0)


def test_learned_aggregation_is_flatten_of_pointwise_product():
  layer = aggregation.LearnedSpatialEmbedding()
  x = tf.random.normal([2, 5, 3])
  layer(x)
  layer.embedding.assign(tf.reshape(tf.range(15, dtype=tf.float32), [5, 3]))
  expected = (x.numpy() * np.arange(15).reshape(5, 3)).reshape(2, 15)
  np.testing.assert_allclose(layer(x), expected, rtol=1e-6)


def test_summary_prints_all_seven_rows(capsys):
  summary.main(['--variant', 'micro', '--resnet_variants', 'micro'])
  out = capsys.readouterr().out
  for name, *_ in summary.TABLE_1:
    assert f'| {name} |' in out
