"""Policy export bookkeeping without training: interrupted exports, stale policy checkpoints,
the export schedule (issue 9; the trained policy itself is checked in test_run_dir_train.py)."""
import json
import os

import tensorflow as tf

from tf_offline_q.train import export


def _fake_export(path, step):
  os.makedirs(os.path.join(path, 'variables'))
  open(os.path.join(path, 'saved_model.pb'), 'w').close()
  with open(os.path.join(path, export.INFO_FILE), 'w') as f:
    json.dump({'train_step': step}, f)


def test_interrupted_exports_are_finished_or_undone(tmp_path, capsys):
  policies = str(tmp_path)
  # Killed between the two renames: the complete new export is put in place.
  _fake_export(os.path.join(policies, '.greedy_policy.old'), 100)
  _fake_export(os.path.join(policies, '.greedy_policy.tmp'), 200)
  # Killed while writing: the previous export stays.
  _fake_export(os.path.join(policies, '.collect_policy.old'), 100)
  os.makedirs(os.path.join(policies, '.collect_policy.tmp', 'variables'))
  # TF-Agents' PolicySavedModelTrigger's variable checkpoints, which nothing restores.
  os.makedirs(os.path.join(policies, 'checkpoints', 'policy_checkpoint_0000000200'))
  export.recover(policies)
  assert sorted(os.listdir(policies)) == ['collect_policy', 'greedy_policy']
  assert export.exported_step(os.path.join(policies, 'greedy_policy')) == 200
  assert export.exported_step(os.path.join(policies, 'collect_policy')) == 100
  assert 'Deleted' in capsys.readouterr().out


def test_export_schedule():
  exporter = export.PolicyExporter('/nonexistent/policies', {}, tf.Variable(0, dtype=tf.int64),
                                   interval=100)
  assert exporter.last_step is None                  # nothing exported yet
  assert [s for s in (20, 99, 100, 120, 200) if exporter.due(s)] == [100, 120, 200]
  exporter.last_step = 100
  assert not exporter.due(100) and not exporter.due(180) and exporter.due(220)
  exporter.last_step = 250        # an export newer than the restored checkpoint
  assert exporter.due(200)
  never = export.PolicyExporter('/nonexistent/policies', {}, tf.Variable(0, dtype=tf.int64), 0)
  assert not never.due(100)


def test_a_shared_policy_is_saved_once_and_copied(tmp_path, monkeypatch):
  """DT / QT / Q-Transformer collect with their greedy policy: one trace and save."""
  from tf_agents.policies import policy_saver, py_tf_eager_policy, random_tf_policy
  from tf_agents.specs import tensor_spec
  from tf_agents.trajectories import time_step as ts
  obs_spec = tensor_spec.TensorSpec([3], tf.float32, 'observation')
  action_spec = tensor_spec.BoundedTensorSpec([], tf.int32, 0, 4, 'action')
  policy = random_tf_policy.RandomTFPolicy(ts.time_step_spec(obs_spec), action_spec)
  made = []
  real_saver = policy_saver.PolicySaver

  def counting_saver(*args, **kwargs):
    made.append(args[0])
    return real_saver(*args, **kwargs)

  monkeypatch.setattr(export.policy_saver, 'PolicySaver', counting_saver)
  step = tf.Variable(7, dtype=tf.int64)
  policies = str(tmp_path / 'policies')
  exporter = export.PolicyExporter(policies, {'greedy_policy': policy,
                                              'collect_policy': policy}, step, interval=0)
  assert exporter.export() == 7
  assert made == [policy]                       # traced and saved once
  for name in export.POLICIES:
    path = os.path.join(policies, name)
    assert export.read_export_info(path)['policy'] == name
    assert export.exported_step(path) == 7
    loaded = py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True)
    assert loaded.get_train_step() == 7
  assert sorted(os.listdir(policies)) == ['collect_policy', 'greedy_policy']
