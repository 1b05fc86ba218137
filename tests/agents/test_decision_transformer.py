"""Decision Transformer: loss against numpy, policy context, PyDriver, PolicySaver."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.environments import py_environment
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q.agents import decision_transformer as dt
from tf_offline_q.data import reverb_windows as rw

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OBS_DIM, ACT_DIM, K = 3, 2, 4


class PointEnv(py_environment.PyEnvironment):
  """A tiny continuous task: obs [3], actions [2] in [-1, 1], 6-step episodes."""

  def __init__(self, seed=0):
    super().__init__()
    self._rng = np.random.default_rng(seed)
    self._t = 0
    self._x = np.zeros(OBS_DIM, np.float32)

  def observation_spec(self):
    return array_spec.ArraySpec([OBS_DIM], np.float32)

  def action_spec(self):
    return array_spec.BoundedArraySpec([ACT_DIM], np.float32, -1.0, 1.0)

  def _reset(self):
    self._t = 0
    self._x = self._rng.normal(size=OBS_DIM).astype(np.float32)
    return ts.restart(self._x.copy())

  def _step(self, action):
    if self.current_time_step().is_last():
      return self.reset()
    self._t += 1
    self._x = (0.9 * self._x + np.concatenate([action, action[:1]])).astype(np.float32)
    reward = np.float32(-np.abs(self._x).sum())
    if self._t >= 6:
      return ts.truncation(self._x.copy(), reward)
    return ts.transition(self._x.copy(), reward)


def specs():
  obs = tensor_spec.TensorSpec([OBS_DIM], tf.float32)
  act = tensor_spec.BoundedTensorSpec([ACT_DIM], tf.float32, -1.0, 1.0)
  return ts.time_step_spec(obs), act


def make_agent(condition_on_returns=True, target_return=5.0, learning_rate=1e-4,
               **net_kwargs):
  time_step_spec, action_spec = specs()
  kwargs = dict(context_length=K, width=16, depth=2, num_heads=2, dropout=0.1,
                max_timestep=50, return_scale=10.0, condition_on_returns=condition_on_returns,
                observation_mean=np.array([0.1, -0.2, 0.3]),
                observation_std=np.array([1.5, 0.5, 2.0]))
  kwargs.update(net_kwargs)
  network = dt.DecisionTransformerNetwork(time_step_spec.observation, action_spec, **kwargs)
  return dt.DecisionTransformerAgent(time_step_spec, action_spec, network,
                                     target_return=target_return, warmup_steps=10,
                                     learning_rate=learning_rate)


def random_window(batch=6, seed=0):
  rng = np.random.default_rng(seed)
  starts = rng.integers(0, K, size=batch)
  starts[0] = 0
  mask = np.arange(K)[None] >= starts[:, None]
  return rw.Window(
      observation=tf.constant(rng.normal(size=(batch, K, OBS_DIM)), tf.float32),
      action=tf.constant(rng.uniform(-1, 1, size=(batch, K, ACT_DIM)), tf.float32),
      reward=tf.zeros([batch, K]), discount=tf.ones([batch, K]),
      return_to_go=tf.constant(rng.normal(size=(batch, K)) * 10, tf.float32),
      timestep=tf.constant(rng.integers(0, 40, size=(batch, K)), tf.int32),
      mask=tf.constant(mask), terminated=tf.zeros([batch], tf.bool))


@pytest.mark.parametrize('condition_on_returns', [True, False])
def test_loss_equals_numpy(condition_on_returns):
  agent = make_agent(condition_on_returns)
  window = random_window()
  predicted = agent.predict_actions(window).numpy()
  mask = window.mask.numpy()
  want = ((predicted - window.action.numpy()) ** 2)[mask].mean()
  got = float(agent.loss(window).loss)
  assert got == pytest.approx(want, rel=1e-5)
  # Padded steps do not count: changing their actions changes nothing.
  changed = window._replace(action=tf.where(window.mask[..., None], window.action, 9.0))
  assert float(agent.loss(changed).loss) == pytest.approx(got, rel=1e-5)


def test_returns_matter_only_when_conditioned():
  window = random_window()
  other = window._replace(return_to_go=window.return_to_go + 50.0)
  for conditioned in (True, False):
    agent = make_agent(conditioned)
    a = agent.predict_actions(window).numpy()
    b = agent.predict_actions(other).numpy()
    assert (np.abs(a - b).max() > 1e-4) == conditioned


def test_loss_sums_over_replicas_to_the_global_loss():
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  window = random_window(batch=8, seed=3)
  rng = np.random.default_rng(1)
  predicted = tf.constant(rng.uniform(-1, 1, size=(8, K, ACT_DIM)), tf.float32)
  want = float(dt.action_mse(predicted, window.action, window.mask))
  ds = tf.data.Dataset.from_tensors((predicted, window.action, window.mask)).unbatch().batch(8)
  batch = next(iter(strategy.experimental_distribute_dataset(ds)))
  per_replica = strategy.run(lambda p, a, m: dt.action_mse(p, a, m), args=batch)
  got = float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
  assert got == pytest.approx(want, rel=1e-5)


def test_training_reduces_loss_and_warms_up():
  agent = make_agent(learning_rate=3e-3)
  window = random_window(batch=16)
  first = agent.train(window)
  assert float(first.extra.learning_rate) <= 3e-3 / 10 * 2 + 1e-9
  for _ in range(30):
    last = agent.train(window)
  assert float(last.loss) < 0.7 * float(first.loss)
  assert int(agent.train_step_counter.numpy()) == 31


def test_policy_first_actions_match_network_on_padded_context():
  agent = make_agent(target_return=7.0)
  policy, network = agent.policy, agent.network
  rng = np.random.default_rng(0)
  obs0, obs1 = rng.normal(size=(2, 1, OBS_DIM)).astype(np.float32)
  state = policy.get_initial_state(1)
  step0 = policy.action(ts.restart(tf.constant(obs0), batch_size=1), state)

  def context(rtg, obs, act, steps, length):
    pad = K - len(rtg)
    return dt.SequenceInput(
        return_to_go=tf.constant([[0.0] * pad + rtg], tf.float32),
        observation=tf.constant(np.concatenate([np.zeros((pad, OBS_DIM)), obs])[None],
                                tf.float32),
        action=tf.constant(np.concatenate([np.zeros((pad, ACT_DIM)), act])[None], tf.float32),
        timestep=tf.constant([[0] * pad + steps], tf.int32),
        mask=tf.constant([[False] * pad + [True] * length]))

  want0 = network(context([7.0], obs0, np.zeros((1, ACT_DIM)), [0], 1))[0][:, -1]
  np.testing.assert_allclose(step0.action.numpy(), want0.numpy(), atol=1e-5)
  reward = 1.5
  step1 = policy.action(ts.transition(tf.constant(obs1), reward=tf.constant([reward])),
                        step0.state)
  a0 = step0.action.numpy()
  want1 = network(context([7.0, 7.0 - reward], np.concatenate([obs0, obs1]),
                          np.concatenate([a0, np.zeros((1, ACT_DIM))]), [0, 1], 2))[0][:, -1]
  np.testing.assert_allclose(step1.action.numpy(), want1.numpy(), atol=1e-5)
  assert int(step1.state['length'][0]) == 2
  # A new episode empties the context.
  again = policy.action(ts.restart(tf.constant(obs0), batch_size=1), step1.state)
  np.testing.assert_allclose(again.action.numpy(), step0.action.numpy(), atol=1e-5)


def _play(policy, steps=20, seed=0):
  env = PointEnv(seed)
  actions = []
  driver = py_driver.PyDriver(env, policy, [lambda traj: actions.append(traj.action)],
                              max_steps=steps)
  driver.run(env.reset(), policy.get_initial_state(1))
  return np.array(actions)


PLAY_SAVED = '''
import sys, numpy as np
from tf_agents.policies import py_tf_eager_policy
from tests.agents.test_decision_transformer import _play
policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(sys.argv[1], load_specs_from_pbtxt=True)
np.save(sys.argv[2], _play(policy))
'''


def test_policy_runs_in_py_driver_and_saved_policy_matches(tmp_path):
  agent = make_agent(target_return=3.0, depth=1)
  agent.train(random_window(batch=8))
  in_memory = _play(py_tf_eager_policy.PyTFEagerPolicy(agent.policy, use_tf_function=True))
  assert in_memory.shape[1:] == (ACT_DIM,) and len(in_memory) >= 20
  assert np.all(np.abs(in_memory) <= 1.0)
  saved_dir = str(tmp_path / 'policy')
  policy_saver.PolicySaver(agent.policy, batch_size=None).save(saved_dir)
  out = str(tmp_path / 'actions.npy')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
  subprocess.run([sys.executable, '-c', PLAY_SAVED, saved_dir, out], cwd=REPO, env=env,
                 check=True, capture_output=True, timeout=120)
  np.testing.assert_allclose(np.load(out), in_memory, atol=1e-5)
  # The target return is recorded in the SavedModel and can be changed there.
  loaded = tf.saved_model.load(saved_dir)
  [target] = [v for v in loaded.model_variables if 'target_return' in v.name]
  assert float(target.numpy()) == 3.0
  dt.set_saved_target_return(loaded, 50.0)
  assert float(target.numpy()) == 50.0


def test_bad_specs_fail_clearly():
  time_step_spec, action_spec = specs()
  with pytest.raises(ValueError, match='continuous actions'):
    dt.DecisionTransformerNetwork(time_step_spec.observation,
                                  tensor_spec.BoundedTensorSpec([], tf.int64, 0, 3))
  with pytest.raises(ValueError, match='observation_mean'):
    dt.DecisionTransformerNetwork(time_step_spec.observation, action_spec,
                                  observation_mean=np.zeros(5))
