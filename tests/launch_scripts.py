"""Imports a `launch/` script as a module (for its functions), leaving absl's
global flags as they were: launch scripts define their flags at import, and
two scripts imported into one test process would define `--seed` twice."""
import importlib.util
import os

from absl import flags

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'launch')


def load(name: str):
  """launch/NAME.py as a module; the flags it defined are removed again."""
  before = set(flags.FLAGS)
  spec = importlib.util.spec_from_file_location(name, os.path.join(LAUNCH, name + '.py'))
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  finally:
    for flag in set(flags.FLAGS) - before:
      delattr(flags.FLAGS, flag)
  return module
