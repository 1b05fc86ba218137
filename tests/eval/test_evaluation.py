"""Tests of evaluate_policy (protocol, epsilon-greedy), results files, summaries."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2
from tf_agents.environments import py_environment
from tf_agents.metrics import py_metrics
from tf_agents.policies import py_policy
from tf_agents.policies import random_tf_policy
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from tf_offline_q import specs
from tf_offline_q.envs import atari
from tf_offline_q.eval import evaluation


class FixedLengthEnv(py_environment.PyEnvironment):
  """Episodes of exactly `length` steps, reward 1 a step; records actions."""

  def __init__(self, length, obs_shape=(84, 84, 4)):
    super().__init__(handle_auto_reset=True)
    self._length = length
    self._obs_spec = array_spec.BoundedArraySpec(obs_shape, np.uint8, 0, 255)
    self._action_spec = tensor_spec.to_array_spec(specs.action_spec(18))
    self._t = 0
    self.actions = []
    self.resets = 0

  def observation_spec(self):
    return self._obs_spec

  def action_spec(self):
    return self._action_spec

  def _obs(self):
    return np.full(self._obs_spec.shape, self._t, dtype=np.uint8)

  def _reset(self):
    self._t = 0
    self.resets += 1
    return ts.restart(self._obs())

  def _step(self, action):
    self.actions.append(int(action))
    self._t += 1
    if self._t >= self._length:
      return ts.termination(self._obs(), np.float32(1.0))
    return ts.transition(self._obs(), np.float32(1.0))


class ConstantPyPolicy(py_policy.PyPolicy):
  """Always action 0: a 'greedy' policy whose exploration is visible."""

  def __init__(self):
    super().__init__(
        tensor_spec.to_nest_array_spec(specs.time_step_spec()),
        tensor_spec.to_array_spec(specs.action_spec(18)))

  def _action(self, time_step, policy_state):
    return policy_step.PolicyStep(np.int64(0), policy_state, ())


def test_dopamine_protocol_finishes_the_last_episode():
  env = FixedLengthEnv(length=10)
  result = evaluation.evaluate_policy(ConstantPyPolicy(), env, num_steps=25,
                                      epsilon=0.0)
  assert result.returns == [10.0, 10.0, 10.0]
  assert result.lengths == [10, 10, 10]
  assert result.num_steps == 30  # 25 budget, third episode finished
  assert result.mean_return == 10.0 and result.num_episodes == 3


def test_tf_agents_metrics_observers_agree():
  env = FixedLengthEnv(length=6)
  average_return = py_metrics.AverageReturnMetric()
  num_episodes = py_metrics.NumberOfEpisodes()
  env_steps = py_metrics.EnvironmentSteps()
  result = evaluation.evaluate_policy(
      ConstantPyPolicy(), env, num_steps=10, epsilon=0.0,
      observers=[average_return, num_episodes, env_steps])
  assert num_episodes.result() == result.num_episodes == 2
  assert env_steps.result() == result.num_steps == 12
  assert average_return.result() == pytest.approx(result.mean_return)


def test_budget_ending_on_an_episode_boundary_starts_no_new_episode():
  env = FixedLengthEnv(length=10)
  result = evaluation.evaluate_policy(ConstantPyPolicy(), env, num_steps=20,
                                      epsilon=0.0)
  assert result.lengths == [10, 10] and result.num_steps == 20


def test_unfinished_episode_dropped_when_asked():
  env = FixedLengthEnv(length=10)
  result = evaluation.evaluate_policy(ConstantPyPolicy(), env, num_steps=25,
                                      epsilon=0.0, finish_last_episode=False)
  assert result.lengths == [10, 10] and result.num_steps == 25


def test_max_episodes_stops_early():
  env = FixedLengthEnv(length=7)
  result = evaluation.evaluate_policy(ConstantPyPolicy(), env,
                                      num_steps=10_000, max_episodes=2,
                                      epsilon=0.0)
  assert result.lengths == [7, 7] and result.num_steps == 14


def test_epsilon_greedy_applied_to_greedy_policy():
  greedy_env = FixedLengthEnv(length=1000)
  evaluation.evaluate_policy(ConstantPyPolicy(), greedy_env, num_steps=1000,
                             epsilon=0.0)
  assert set(greedy_env.actions) == {0}

  explore_env = FixedLengthEnv(length=1000)
  evaluation.evaluate_policy(ConstantPyPolicy(), explore_env, num_steps=1000,
                             epsilon=1.0, seed=0)
  assert set(explore_env.actions) == set(range(18))

  env = FixedLengthEnv(length=2000)
  evaluation.evaluate_policy(ConstantPyPolicy(), env, num_steps=2000,
                             epsilon=0.2, seed=0)
  non_greedy = np.mean(np.array(env.actions) != 0)
  assert non_greedy == pytest.approx(0.2 * 17 / 18, abs=0.03)


def test_epsilon_greedy_is_seeded():
  runs = []
  for _ in range(2):
    env = FixedLengthEnv(length=300)
    evaluation.evaluate_policy(ConstantPyPolicy(), env, num_steps=300,
                               epsilon=0.5, seed=4)
    runs.append(env.actions)
  assert runs[0] == runs[1]


def test_default_protocol_constants():
  assert evaluation.EVAL_STEPS == 125_000
  assert evaluation.EVAL_EPSILON == 0.001


def test_tf_policy_on_atari_env():
  policy = random_tf_policy.RandomTFPolicy(specs.time_step_spec(),
                                           specs.action_spec(18))
  made = []

  def factory():
    made.append(atari.make_atari_env('Pong', max_episode_frames=80, seed=0))
    return made[-1]

  result = evaluation.evaluate_policy(policy, factory, num_steps=30, seed=0)
  assert result.lengths == [20, 20]  # 80 frames / 4; second episode finished
  assert result.num_steps == 40
  assert made[0].num_episodes == 2
  assert result.returns[-1] == made[0].last_episode['return']


def test_incompatible_policy_is_a_clear_error():
  env = FixedLengthEnv(length=5, obs_shape=(42, 42, 1))
  with pytest.raises(ValueError, match=r'\[84, 84, 4\].*\[42, 42, 1\]'):
    evaluation.evaluate_policy(ConstantPyPolicy(), env, num_steps=10)
  six_actions = random_tf_policy.RandomTFPolicy(specs.time_step_spec(),
                                                specs.action_spec(6))
  with pytest.raises(ValueError, match='6 actions but the environment 18'):
    evaluation.evaluate_policy(six_actions, FixedLengthEnv(5), num_steps=10)
  with pytest.raises(TypeError, match='policy must be'):
    evaluation.evaluate_policy(object(), FixedLengthEnv(5), num_steps=10)
  with pytest.raises(ValueError, match='does not exist'):
    evaluation.evaluate_policy('/nonexistent/policy', FixedLengthEnv(5))


def _record(step, returns, game='Pong'):
  return evaluation.make_eval_record(game, step, returns,
                                     lengths=[100] * len(returns))


def test_make_eval_record():
  record = _record(62500, [14.5, 14.5])
  assert set(record) == set(evaluation.EVAL_RECORD_KEYS)
  assert record['mean_return'] == 14.5
  assert record['normalized'] == pytest.approx(1.0)
  result = evaluation.EvalResult(returns=[-20.3], lengths=[900], num_steps=900)
  assert evaluation.make_eval_record('Pong', 0, result)['normalized'] == (
      pytest.approx(0.0))
  assert _record(0, [5.0], game='MsPacman')['normalized'] is None
  with pytest.raises(ValueError, match='returns'):
    _record(0, [])


def test_append_and_read_eval_records(tmp_path):
  run_dir = str(tmp_path / 'run')
  evaluation.append_eval_record(run_dir, _record(125000, [1.0, 3.0]))
  evaluation.append_eval_record(run_dir, _record(62500, [0.0]))
  path = os.path.join(run_dir, 'eval', 'returns.jsonl')
  with open(path) as f:
    lines = f.read().splitlines()
  assert len(lines) == 2
  assert json.loads(lines[0])['step'] == 62500  # sorted by step
  records = evaluation.read_eval_records(run_dir)
  assert [r['step'] for r in records] == [62500, 125000]
  assert records[1]['returns'] == [1.0, 3.0] and records[1]['mean_return'] == 2.0
  # Re-evaluating a step replaces its record.
  evaluation.append_eval_record(run_dir, _record(125000, [7.0]))
  records = evaluation.read_eval_records(run_dir)
  assert [r['mean_return'] for r in records] == [0.0, 7.0]
  # Rewriting keeps only what is given (a resumed trainer trimming records).
  evaluation.write_eval_records(run_dir, records[:1])
  assert [r['step'] for r in evaluation.read_eval_records(run_dir)] == [62500]
  with pytest.raises(ValueError, match='repeat'):
    evaluation.write_eval_records(run_dir, records[:1] * 2)
  # No temporary files are left behind.
  assert os.listdir(os.path.join(run_dir, 'eval')) == ['returns.jsonl']


def test_eval_record_errors_name_the_file(tmp_path):
  run_dir = str(tmp_path / 'run')
  with pytest.raises(FileNotFoundError, match='returns.jsonl'):
    evaluation.read_eval_records(run_dir)
  with pytest.raises(ValueError, match='missing'):
    evaluation.append_eval_record(run_dir, {'game': 'Pong', 'step': 1})
  evaluation.append_eval_record(run_dir, _record(1, [1.0]))
  with open(evaluation.returns_path(run_dir), 'a') as f:
    f.write('{not json\n')
  with pytest.raises(ValueError, match=r'returns\.jsonl:2'):
    evaluation.read_eval_records(run_dir)


def test_run_info_roundtrip(tmp_path):
  run_dir = str(tmp_path / 'run')
  evaluation.write_run_info(run_dir, 'Pong', 'vit-cql', 3, backbone='vit')
  info = evaluation.read_run_info(run_dir)
  assert info == {'game': 'Pong', 'method': 'vit-cql', 'seed': 3,
                  'backbone': 'vit'}
  with pytest.raises(FileNotFoundError, match='run.json'):
    evaluation.read_run_info(str(tmp_path / 'other'))
  with pytest.raises(ValueError, match='seed'):
    evaluation.write_run_info(run_dir, 'Pong', 'vit-cql', 'three')


def _read_scalars(logdir):
  values = {}
  for path in glob.glob(os.path.join(logdir, 'events.out.tfevents.*')):
    for raw in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(raw.numpy())
      for value in event.summary.value:
        values[(value.tag, event.step)] = float(
            tf.make_ndarray(value.tensor))
  return values


def test_write_eval_summaries(tmp_path):
  logdir = str(tmp_path / 'tb')
  writer = tf.summary.create_file_writer(logdir)
  per_game = {
      'Pong': [14.5, 14.5],  # normalised 1.0
      'Breakout': evaluation.EvalResult([1.3, 1.3], [10, 10], 20),  # 0.0
      'Asterix': [3185.2 * 2 - 279.1],  # 2.0
      'Qbert': [155.0 + 0.5 * (8249.7 - 155.0)],  # 0.5
  }
  written = evaluation.write_eval_summaries(writer, 62500, per_game)
  scalars = _read_scalars(logdir)
  assert scalars[('Eval/AverageReturn/Pong', 62500)] == pytest.approx(14.5)
  assert scalars[('Eval/DQNNormalizedScore/Pong', 62500)] == pytest.approx(1.0)
  assert scalars[('Eval/DQNNormalizedScore/Asterix', 62500)] == (
      pytest.approx(2.0, rel=1e-5))
  assert scalars[('Eval/NumEpisodes/Breakout', 62500)] == 2.0
  # IQM of [0, 0.5, 1, 2]: trimming 1 from each end leaves 0.5 and 1.
  assert scalars[('Eval/IQM_DQNNormalizedScore', 62500)] == (
      pytest.approx(0.75, rel=1e-5))
  assert written['Eval/IQM_DQNNormalizedScore'] == pytest.approx(0.75)
