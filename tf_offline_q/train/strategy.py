"""The tf.distribute strategy of a run: TPU, mirrored GPUs, CPU, or multi-worker."""
import json
import os

import tensorflow as tf
from tf_agents.train.utils import strategy_utils


def num_workers_in_tf_config() -> int:
  """Number of worker/chief tasks in `TF_CONFIG` (0 when unset)."""
  raw = os.environ.get('TF_CONFIG')
  if not raw:
    return 0
  try:
    cluster = json.loads(raw).get('cluster', {})
  except json.JSONDecodeError as e:
    raise ValueError(f'TF_CONFIG is not valid JSON: {e}') from e
  return len(cluster.get('worker', [])) + len(cluster.get('chief', []))


def make_strategy(tpu=None, use_gpu=False, cpu_replicas: int = 0) -> tf.distribute.Strategy:
  """`MultiWorkerMirroredStrategy` when `TF_CONFIG` names several workers,
  else TF-Agents' choice: `TPUStrategy` (`tpu`), `MirroredStrategy` over the
  GPUs (`use_gpu`), or the default (CPU) strategy.

  `cpu_replicas` > 1: a `MirroredStrategy` over that many logical CPU devices
  (the host CPU split; call before TensorFlow initialises its devices). It is
  not faster: it runs the data-parallel path (per-replica datasets, all-reduce)
  on a machine without accelerators, e.g. in tests.
  """
  if cpu_replicas > 1:
    if tpu or use_gpu or num_workers_in_tf_config() > 1:
      raise ValueError('cpu_replicas is for one CPU-only process; not with --tpu, --use_gpu '
                       'or a multi-worker TF_CONFIG')
    cpu = tf.config.list_physical_devices('CPU')[0]
    try:
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    except RuntimeError as e:
      if len(tf.config.list_logical_devices('CPU')) != cpu_replicas:
        raise ValueError(f'cannot split the CPU into {cpu_replicas} logical devices: '
                         f'TensorFlow already initialised its devices ({e})') from e
    return tf.distribute.MirroredStrategy([f'/cpu:{i}' for i in range(cpu_replicas)])
  if num_workers_in_tf_config() > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  return strategy_utils.get_strategy(tpu, use_gpu)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True for the one task that writes checkpoints, summaries and evaluations."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  return resolver.task_type == 'chief' or (
      resolver.task_type == 'worker' and resolver.task_id == 0 and
      'chief' not in resolver.cluster_spec().as_dict())


def task_index(strategy: tf.distribute.Strategy) -> int:
  resolver = getattr(strategy, 'cluster_resolver', None)
  return int(resolver.task_id or 0) if resolver is not None and resolver.task_type else 0


def describe(strategy: tf.distribute.Strategy) -> str:
  """'MultiWorkerMirroredStrategy with 2 replica(s)' (public class names)."""
  name = type(strategy).__name__.replace('_DefaultDistributionStrategy', 'default strategy')
  # tf.distribute exports some strategies under names other than their classes'.
  for cls, public in ((tf.distribute.MultiWorkerMirroredStrategy, 'MultiWorkerMirroredStrategy'),
                      (tf.distribute.MirroredStrategy, 'MirroredStrategy'),
                      (tf.distribute.TPUStrategy, 'TPUStrategy')):
    if isinstance(strategy, cls):
      name = public
      break
  return f'{name} with {strategy.num_replicas_in_sync} replica(s)'
