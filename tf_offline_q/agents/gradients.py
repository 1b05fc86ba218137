"""Gradient application shared by the agents, correct under any tf.distribute strategy."""
from typing import Optional, Sequence

import tensorflow as tf


def apply_gradients(optimizer, gradients: Sequence[tf.Tensor], variables: Sequence[tf.Variable],
                    clip_norm: Optional[float] = None) -> tf.Tensor:
  """Sums gradients over replicas, clips their global norm, applies them.

  Losses are scaled by the global batch size, so the replicas' gradients sum
  to the gradient of the global-batch loss; clipping happens after that sum,
  so it sees the same global norm as a single-device run.

  Returns:
    The global gradient norm (before clipping) divided by the number of
    replicas, so that a `SUM` reduction over replicas (as TF-Agents' `Learner`
    does with `LossInfo`) yields the norm itself.
  """
  context = tf.distribute.get_replica_context()
  num_replicas = context.num_replicas_in_sync if context is not None else 1
  if any(g is None for g in gradients):
    missing = [v.name for g, v in zip(gradients, variables) if g is None]
    raise ValueError(f'No gradient reaches these variables: {missing}')
  if num_replicas > 1:
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, list(gradients))
  norm = tf.linalg.global_norm(gradients)
  if clip_norm is not None:
    gradients, _ = tf.clip_by_global_norm(gradients, clip_norm, use_norm=norm)
  optimizer.apply_gradients(zip(gradients, variables), skip_gradients_aggregation=True)
  return norm / num_replicas
