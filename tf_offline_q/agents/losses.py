"""Loss terms of distributional CQL, written out in the order of the papers.

Notation: a batch of B n-step windows; A actions; N atoms z_1 < ... < z_N,
equally spaced on [v_min, v_max] with spacing dz.
"""
import tensorflow as tf
from tf_agents.utils import common


def n_step_return(rewards, discounts, gamma):
  """Discounted n-step return and the discount of its bootstrap value.

      G          = sum_{t<n} gamma^t (prod_{k<t} d_k) r_t
      bootstrap  = gamma^n  prod_{k<n} d_k

  `d_k` is 0 where step k ended the episode (a terminal), which cuts both the
  later rewards and the bootstrap, exactly as Dopamine sums rewards "up to and
  including the first terminal".

  Args:
    rewards: `[B, n]` per-step rewards r_0 .. r_{n-1}.
    discounts: `[B, n]` per-step continuation flags d_0 .. d_{n-1} (0 or 1).
    gamma: scalar discount factor.
  Returns:
    `(G [B], bootstrap [B])`.
  """
  n = rewards.shape[1]
  gamma_t = gamma ** tf.range(n, dtype=rewards.dtype)              # [n]
  alive = tf.math.cumprod(discounts, axis=1, exclusive=True)       # prod_{k<t} d_k
  returns = tf.reduce_sum(gamma_t * alive * rewards, axis=1)
  bootstrap = gamma ** n * tf.reduce_prod(discounts, axis=1)
  return returns, bootstrap


def project_distribution(target_support, probabilities, support):
  """C51 projection (Bellemare et al., 2017, eq. 7) onto the fixed support.

      (Phi T Z)_i = sum_j [1 - |clip(Tz_j, v_min, v_max) - z_i| / dz]_0^1  p_j

  Args:
    target_support: `[B, N]` shifted atoms Tz_j = G + bootstrap * z_j.
    probabilities: `[B, N]` probabilities p_j of those atoms.
    support: `[N]` the fixed, equally spaced support z_i.
  Returns:
    `[B, N]` projected probabilities on `support`.
  """
  v_min, v_max = support[0], support[-1]
  delta_z = (v_max - v_min) / tf.cast(tf.shape(support)[0] - 1, support.dtype)
  clipped = tf.clip_by_value(target_support, v_min, v_max)                     # [B, N_j]
  distance = tf.abs(clipped[:, None, :] - support[None, :, None]) / delta_z  # [B, N_i, N_j]
  weights = tf.clip_by_value(1.0 - distance, 0.0, 1.0)
  return tf.reduce_sum(weights * probabilities[:, None, :], axis=2)


def expected_q(logits, support):
  """Q(s, a) = sum_i softmax(logits)_i z_i: `[B, A, N] -> [B, A]`."""
  return tf.reduce_sum(tf.nn.softmax(logits, axis=-1) * support, axis=-1)


def select_action(values, actions):
  """`values[b, actions[b]]`: `[B, A, ...]`, `[B]` -> `[B, ...]`."""
  return tf.gather(values, tf.cast(actions, tf.int32), axis=1, batch_dims=1)


def cql_regularizer(q_values, actions):
  """Per-state CQL(H) term of eq. (1):

      log sum_{a'} exp Q(s, a')  -  Q(s, a_data)

  Args:
    q_values: `[B, A]` expected Q-values of all actions.
    actions: `[B]` dataset actions.
  Returns:
    `(term [B], logsumexp [B], q_data [B])`.
  """
  logsumexp = tf.reduce_logsumexp(q_values, axis=-1)
  q_data = select_action(q_values, actions)
  return logsumexp - q_data, logsumexp, q_data


def dr3_regularizer(features, next_features):
  """DR3 (Kumar et al., 2021b): |phi(s) . phi(s')|, `[B, F], [B, F] -> [B]`."""
  return tf.abs(tf.reduce_sum(features * next_features, axis=-1))


def global_mean(per_example, weights=None):
  """Mean of `[B]` values over the global batch (sums correctly over replicas)."""
  return common.aggregate_losses(per_example_loss=per_example, sample_weight=weights).total_loss
