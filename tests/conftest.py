"""Shared test set-up: quiet TensorFlow, two logical CPUs, small fixtures."""
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


@pytest.fixture(autouse=True)
def _seed():
  tf.keras.utils.set_random_seed(0)
  np.random.seed(0)
