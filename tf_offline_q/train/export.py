"""Policy export: the trained policies as self-contained SavedModels.

`RUN/policies/greedy_policy` and `RUN/policies/collect_policy` are TF-Agents
`PolicySaver` SavedModels of the latest exported train step; each needs
nothing else to load:

  policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
      'RUN/policies/greedy_policy', load_specs_from_pbtxt=True)
  policy.get_train_step()      # the train step of the weights it holds

Each directory also holds `export_info.json` ({"train_step", "policy",
"exported"}, plus the exporter's `info`, e.g. a multi-game run's "games": the
game of each game id the policy's observations carry), written before the
directory is put in place. An export is
written to `policies/.NAME.tmp`, then the previous one is renamed to
`.NAME.old`, the new one into place, and the old one deleted; a process killed
during an export leaves the previous export in place (or, between the two
renames, one that `PolicyExporter` puts back on the next start). A policy that
is the same object as one already written (DT, QT and Q-Transformer collect with
their greedy policy) is copied from it rather than traced and saved again. No policy
variable checkpoints are written (TF-Agents' `PolicySavedModelTrigger` wrote
`policies/checkpoints/`, which nothing restores; they are deleted when found).
"""
import datetime
import json
import os
import warnings
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
from tf_agents.policies import policy_saver

from tf_offline_q import files

POLICIES = ('greedy_policy', 'collect_policy')
INFO_FILE = 'export_info.json'
STALE_CHECKPOINTS = 'checkpoints'   # policies/checkpoints of PolicySavedModelTrigger


def read_export_info(policy_dir: str) -> Optional[Dict[str, Any]]:
  """`POLICY_DIR/export_info.json`, or None when absent or unreadable."""
  path = os.path.join(policy_dir, INFO_FILE)
  try:
    with tf.io.gfile.GFile(path) as f:
      info = json.load(f)
  except (tf.errors.OpError, ValueError):
    return None
  return info if isinstance(info, dict) else None


def exported_step(policy_dir: str) -> Optional[int]:
  """The train step recorded beside the SavedModel in `policy_dir` (None: unknown)."""
  info = read_export_info(policy_dir)
  step = info.get('train_step') if info else None
  return step if isinstance(step, int) and not isinstance(step, bool) else None


def _is_complete(policy_dir: str) -> bool:
  return (tf.io.gfile.exists(os.path.join(policy_dir, 'saved_model.pb')) and
          exported_step(policy_dir) is not None)


def recover(policies_dir: str) -> None:
  """Finishes or undoes an export interrupted between its renames; removes leftovers."""
  if not tf.io.gfile.isdir(policies_dir):
    return
  for name in POLICIES:
    target = os.path.join(policies_dir, name)
    tmp = os.path.join(policies_dir, f'.{name}.tmp')
    old = os.path.join(policies_dir, f'.{name}.old')
    if not tf.io.gfile.exists(target):
      if tf.io.gfile.exists(tmp) and _is_complete(tmp):
        tf.io.gfile.rename(tmp, target)
      elif tf.io.gfile.exists(old):
        tf.io.gfile.rename(old, target)
    for leftover in (tmp, old):
      if tf.io.gfile.exists(leftover):
        tf.io.gfile.rmtree(leftover)
  stale = os.path.join(policies_dir, STALE_CHECKPOINTS)
  if tf.io.gfile.isdir(stale):
    tf.io.gfile.rmtree(stale)
    print(f'Deleted {stale}: policy variable checkpoints of an earlier version, which '
          'nothing restores (the policies are exported as whole SavedModels).', flush=True)


def _copy_tree(source: str, destination: str) -> None:
  """Copies the directory tree `source` to `destination` (any tf.io.gfile path)."""
  for directory, _, names in tf.io.gfile.walk(source):
    relative = os.path.relpath(directory, source)
    into = os.path.normpath(os.path.join(destination, relative))
    tf.io.gfile.makedirs(into)
    for name in names:
      tf.io.gfile.copy(os.path.join(directory, name), os.path.join(into, name), overwrite=True)


class PolicyExporter:
  """Exports the policies as SavedModels every `interval` train steps.

  Example:
    exporter = PolicyExporter(os.path.join(run_dir, 'policies'),
                              {'greedy_policy': agent.policy,
                               'collect_policy': agent.collect_policy},
                              train_step, interval=62_500)
    if exporter.due(step):               # after each checkpoint
      exporter.export()
  """

  def __init__(self, policies_dir: str, policies: Mapping[str, Any], train_step: tf.Variable,
               interval: int, info: Optional[Mapping[str, Any]] = None):
    """Args:
      policies_dir: `RUN/policies`.
      policies: {directory name: TFPolicy}.
      train_step: the run's step counter (saved into the SavedModels).
      interval: export when the step reaches a multiple of it; 0: only when
        `export` is called.
      info: more JSON fields for each `export_info.json` (e.g. {"games": [...]}).
    """
    self._dir = policies_dir
    self._policies = dict(policies)
    self._train_step = train_step
    self._interval = interval
    self._info = dict(info or {})
    self._savers = None
    recover(policies_dir)
    self.last_step = self.exported_step()

  def exported_step(self) -> Optional[int]:
    """The step of the export in place; None if some policy is missing or has
    no recorded step (never exported, or exported by an earlier version)."""
    steps = {exported_step(os.path.join(self._dir, name)) for name in self._policies}
    return steps.pop() if len(steps) == 1 else None

  def has_export(self) -> bool:
    """True when any policy directory exists (of any step or version)."""
    return any(tf.io.gfile.exists(os.path.join(self._dir, name)) for name in self._policies)

  def due(self, step: int) -> bool:
    """True if `step` passed a multiple of the interval since the last export."""
    if not self._interval or step == self.last_step:
      return False
    last = self.last_step if self.last_step is not None else 0
    return step // self._interval > last // self._interval or last > step

  def _saver_or_source(self):
    """{name: PolicySaver, or the earlier name holding the same policy object}."""
    savers, first_name = {}, {}
    for name, policy in self._policies.items():
      if id(policy) in first_name:
        savers[name] = first_name[id(policy)]
      else:
        first_name[id(policy)] = name
        savers[name] = policy_saver.PolicySaver(policy, batch_size=None,
                                                train_step=self._train_step)
    return savers

  def export(self) -> int:
    """Writes every policy at the current train step; returns the step."""
    step = int(self._train_step.numpy())
    if self._savers is None:
      self._savers = self._saver_or_source()
    tf.io.gfile.makedirs(self._dir)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    for name, saver in self._savers.items():
      target = os.path.join(self._dir, name)
      tmp = os.path.join(self._dir, f'.{name}.tmp')
      old = os.path.join(self._dir, f'.{name}.old')
      for leftover in (tmp, old):
        if tf.io.gfile.exists(leftover):
          tf.io.gfile.rmtree(leftover)
      if isinstance(saver, str):   # the same policy, written above at this step
        _copy_tree(os.path.join(self._dir, saver), tmp)
      else:
        with warnings.catch_warnings():
          # TFP's note that loading needs tfp imported (TF-Agents imports it).
          warnings.filterwarnings('ignore', message='Encoding a StructuredValue')
          saver.save(tmp)
      files.atomic_write_text(os.path.join(tmp, INFO_FILE), json.dumps(
          dict(self._info, train_step=step, policy=name, exported=stamp)) + '\n')
      if tf.io.gfile.exists(target):
        tf.io.gfile.rename(target, old)
      tf.io.gfile.rename(tmp, target)
      if tf.io.gfile.exists(old):
        tf.io.gfile.rmtree(old)
    self.last_step = step
    return step
