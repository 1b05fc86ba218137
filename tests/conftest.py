"""Shared test set-up: quiet TensorFlow, two logical CPUs, small fixtures."""
import itertools
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

# Two logical CPU devices, so that MirroredStrategy tests run on this machine.
_cpus = tf.config.list_physical_devices('CPU')
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # Already initialised by an earlier import.
  pass


# Every MirroredStrategy starts its collective group keys at 1, and the runtime
# keeps the shapes of earlier collectives under those keys, so a second strategy
# in the same pytest process that reduces tensors of other shapes fails with
# "Shape mismatch in the collective". `_collective_key_base` is TensorFlow's own
# test hook (strategy_combinations uses it): give each strategy its own range.
_key_bases = itertools.count(1)
for _cls in (tf.distribute.MirroredStrategy,):
  _original_init = _cls.__init__

  def _init(self, *args, _original_init=_original_init, **kwargs):
    if type(self)._collective_key_base == 0:   # not set by a test's own subclass
      self._collective_key_base = 1_000_000 * next(_key_bases)
    _original_init(self, *args, **kwargs)

  _cls.__init__ = _init


@pytest.fixture(autouse=True)
def _seed():
  tf.keras.utils.set_random_seed(0)
  np.random.seed(0)
