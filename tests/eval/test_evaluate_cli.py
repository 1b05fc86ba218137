"""End-to-end test of launch/evaluate.py on a tiny saved Q-network policy."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from tf_agents.networks import sequential
from tf_agents.policies import policy_saver
from tf_agents.policies import q_policy

from tf_offline_q import specs
from tf_offline_q.envs import atari
from tf_offline_q.eval import evaluation
from tf_offline_q.eval import normalization

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
EVALUATE = os.path.join(REPO, 'launch', 'evaluate.py')
TRAIN_STEP = 1234


def _load_evaluate_module():
  """launch/evaluate.py as a module (its flags are only defined under main)."""
  spec = importlib.util.spec_from_file_location('tfoq_launch_evaluate',
                                                EVALUATE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def saved_policy_dir(tmp_path_factory):
  """A greedy QPolicy over a tiny Q-network, saved with PolicySaver."""
  q_net = sequential.Sequential([
      tf.keras.layers.Lambda(lambda x: tf.cast(x, tf.float32) / 255.0),
      tf.keras.layers.AveragePooling2D(pool_size=12),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(specs.NUM_ACTIONS_FULL),
  ], input_spec=specs.observation_spec())
  policy = q_policy.QPolicy(specs.time_step_spec(), specs.action_spec(),
                            q_network=q_net)
  saver = policy_saver.PolicySaver(
      policy, batch_size=None,
      train_step=tf.Variable(TRAIN_STEP, dtype=tf.int64))
  path = str(tmp_path_factory.mktemp('policy') / 'greedy')
  saver.save(path)
  return path


def test_evaluate_end_to_end(saved_policy_dir, tmp_path):
  output = str(tmp_path / 'eval.json')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  completed = subprocess.run(
      [sys.executable, EVALUATE, f'--policy_dir={saved_policy_dir}',
       '--games=pong', '--games=Breakout,pong', '--num_steps=30',
       '--max_episode_frames=160', '--seed=0', f'--output={output}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  with open(output) as f:
    report = json.load(f)
  assert report['train_step'] == TRAIN_STEP
  assert report['protocol']['epsilon'] == 0.001
  assert report['protocol']['sticky_action_prob'] == 0.25
  assert report['protocol']['num_steps'] == 30
  assert sorted(report['results']) == ['Breakout', 'Pong']  # deduplicated
  scores = []
  for game, result in report['results'].items():
    # 160 frames = 40-step episodes; the budget (30) ends inside the first,
    # which is finished (Dopamine protocol).
    assert result['lengths'] == [40], game
    assert result['num_steps'] == 40 and result['num_episodes'] == 1
    assert result['mean_return'] == pytest.approx(sum(result['returns']))
    assert result['normalized'] == pytest.approx(
        normalization.dqn_normalized_score(game, result['mean_return']))
    scores.append(result['normalized'])
  assert report['iqm_normalized'] == pytest.approx(sum(scores) / 2)
  assert 'Wrote' in completed.stdout
  assert (f'Playing the policy in {saved_policy_dir}: train step {TRAIN_STEP}'
          in completed.stdout)


def _save_policy(path, num_actions):
  q_net = sequential.Sequential([
      tf.keras.layers.Lambda(lambda x: tf.cast(x, tf.float32) / 255.0),
      tf.keras.layers.AveragePooling2D(pool_size=12),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(num_actions),
  ], input_spec=specs.observation_spec())
  policy = q_policy.QPolicy(specs.time_step_spec(), specs.action_spec(num_actions),
                            q_network=q_net)
  policy_saver.PolicySaver(policy, batch_size=None).save(path)
  return path


def test_action_set_is_inferred_per_game(tmp_path, capsys):
  """6 actions: Pong's minimal set on the ALE, but MinAtar's full set."""
  evaluate = _load_evaluate_module()
  policy_dir = _save_policy(str(tmp_path / 'six'), 6)
  report = evaluate.evaluate_saved_policy(
      policy_dir, ['Pong', 'MinAtar-Breakout'], str(tmp_path / 'out.json'),
      num_steps=5, epsilon=0.0, sticky_action_prob=0.25, seed=0,
      max_episode_frames=40)
  assert report['results']['Pong']['full_action_space'] is False
  assert report['results']['MinAtar-Breakout']['full_action_space'] is True
  assert report['protocol']['full_action_space'] is None
  assert report['train_step'] is None            # saved without a train step
  assert 'train step unknown (saved without one)' in capsys.readouterr().out


def test_saved_policy_evaluates_in_process(saved_policy_dir):
  policy = evaluation.load_saved_policy(saved_policy_dir)
  assert policy.get_train_step() == TRAIN_STEP
  result = evaluation.evaluate_policy(
      policy, lambda: atari.make_atari_env('Pong', max_episode_frames=400),
      num_steps=10, seed=1)
  assert result.lengths == [100] and result.num_steps == 100


def test_bad_policy_dir_is_named(tmp_path):
  evaluate = _load_evaluate_module()
  missing = str(tmp_path / 'no_policy_here')
  with pytest.raises(ValueError, match='no_policy_here.*does not exist'):
    evaluate.evaluate_saved_policy(
        missing, ['Pong'], str(tmp_path / 'out.json'), num_steps=10,
        epsilon=0.001, sticky_action_prob=0.25, seed=0)
  not_a_model = tmp_path / 'just_a_dir'
  not_a_model.mkdir()
  with pytest.raises(ValueError, match='just_a_dir.*saved_model.pb'):
    evaluation.load_saved_policy(str(not_a_model))
  with pytest.raises(ValueError, match='Pongg'):
    evaluate.parse_games(['Pong,Pongg'])
  assert evaluate.parse_games(['pong, breakout', 'Pong']) == ['Pong',
                                                               'Breakout']
  assert not os.path.exists(tmp_path / 'out.json')
