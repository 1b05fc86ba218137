"""GPT trunk: shapes, causality, key masking, dropout only in training."""
import numpy as np
import pytest
import tensorflow as tf

from tf_offline_q.networks import gpt


def _trunk(**kwargs):
  args = dict(width=16, depth=2, num_heads=2, dropout=0.1)
  args.update(kwargs)
  return gpt.GPT(**args)


@pytest.mark.parametrize('max_positions', [None, 12])
def test_causal_changing_token_j_leaves_earlier_outputs(max_positions):
  model = _trunk(max_positions=max_positions)
  x = tf.random.normal([2, 9, 16])
  out = model(x).numpy()
  assert out.shape == (2, 9, 16)
  for j in (0, 4, 8):
    changed = x.numpy().copy()
    changed[:, j] += 5.0 * np.random.normal(size=(2, 16))
    out2 = model(tf.constant(changed)).numpy()
    np.testing.assert_allclose(out2[:, :j], out[:, :j], atol=1e-5)
    assert np.abs(out2[:, j:] - out[:, j:]).max() > 1e-3  # later tokens do see it


def test_masked_keys_are_ignored():
  model = _trunk()
  x = tf.random.normal([1, 6, 16])
  key_mask = tf.constant([[False, False, True, True, True, True]])
  out = model(x, key_mask).numpy()
  changed = x.numpy().copy()
  changed[:, :2] = 100.0  # the padded tokens
  out2 = model(tf.constant(changed), key_mask).numpy()
  np.testing.assert_allclose(out2[:, 2:], out[:, 2:], atol=1e-5)
  assert np.all(np.isfinite(out2))


def test_dropout_only_when_training():
  model = _trunk(dropout=0.5)
  x = tf.random.normal([2, 5, 16])
  np.testing.assert_allclose(model(x).numpy(), model(x, training=False).numpy())
  assert np.abs(model(x, training=True).numpy() - model(x).numpy()).max() > 1e-3


def test_bad_arguments():
  with pytest.raises(ValueError, match='num_heads'):
    gpt.GPT(width=10, num_heads=3)(tf.zeros([1, 2, 10]))
  with pytest.raises(ValueError, match='width 16'):
    _trunk()(tf.zeros([1, 2, 8]))


def test_timestep_embedding_clips():
  emb = gpt.TimestepEmbedding(10, 4)
  out = emb(tf.constant([[0, 9, 50]])).numpy()
  assert out.shape == (1, 3, 4)
  np.testing.assert_allclose(out[0, 1], out[0, 2])
