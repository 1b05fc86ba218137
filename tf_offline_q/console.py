"""A readable console: our progress lines and results, not third-party chatter.

Every launch script calls `quiet_third_party()` first thing in `main`. It
silences, at their source and only where nothing of ours is lost:

  * absl / TensorFlow Python logging below ERROR (TF-Agents' SavedModel INFO
    lines, rliable's "Calculating estimates" INFO lines), unless the user
    passed `--verbosity`;
  * TensorFlow's warning, at every PolicySaver export, that a TFP distribution
    spec is encoded in the SavedModel ("Encoding a StructuredValue with type
    tfp.distributions..."): the spec is registered whenever TF-Agents is
    imported, which every loader of our policies does.

Two other sources are handled by the installation (setup.py): the CUDA-factory
registration errors that the GPU build of TensorFlow 2.15 prints at import
(we install `tensorflow-cpu`), and gym's "unmaintained" notice printed when
TF-Agents imports gym 0.23 (`gym-notices==0.0.8` has no notice for 0.23), and
gymnasium-robotics' notice about AdroitHand rewards (environments we do not
use; `farama-notifications==0.0.4` carries no notices).

Reverb's C++ server writes informational lines (server start, table
checkpoints) to stderr with no level control; `is_reverb_info` recognises
exactly those, so parents that relay a child's output (the demo, the
benchmarks) can drop them. Errors and anything unrecognised always pass.
"""
import re
import warnings

from absl import flags
from absl import logging

_REVERB_INFO = re.compile(
    r'^\[reverb/cc/[\w/.]+:\d+\]\s+('
    r'Initializing TFRecordCheckpointer in |'
    r'Loading latest checkpoint from |'
    r'Started replay server on port |'
    r'Stored checkpoint to |'
    r'Shutting down replay server|'
    r'Loading checkpoint from |'
    r'Loading and verifying metadata of the checkpointed tables\.|'
    r'Successfully loaded \d+ tables? from checkpoint|'
    r'Loading checkpoint for table |'
    r'Successfully loaded table |'
    r'No checkpoint found in |'
    r'Sampler and server are owned by the same process )')


def quiet_third_party():
  """Silences third-party INFO/WARNING chatter (see the module docstring)."""
  verbosity_given = flags.FLAGS.is_parsed() and 'verbosity' in flags.FLAGS and \
      flags.FLAGS['verbosity'].present
  if not verbosity_given:
    logging.set_verbosity(logging.ERROR)
  warnings.filterwarnings('ignore', message=r'Encoding a StructuredValue with type tfp\.',
                          category=UserWarning)


def is_reverb_info(line: str) -> bool:
  """True for Reverb's informational server lines (never for its errors)."""
  return bool(_REVERB_INFO.match(line.strip()))


def python_warning_filters() -> str:
  """PYTHONWARNINGS for child processes: the same filter as `quiet_third_party`."""
  return 'ignore:Encoding a StructuredValue with type tfp.:UserWarning'
