"""Multi-game training (Scaled Q-learning): mixed batches, train.py on two games, fine-tuning.

Data: tiny synthetic Dopamine directories, one per MinAtar game, whose frames
are all `game_pixel(g)`, so a sampled window shows which table it came from.
"""
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.policies import random_tf_policy

from tests.train import conftest
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import game_mixture
from tf_offline_q.data import reverb_stream
from tf_offline_q.eval import evaluation
from tf_offline_q.eval import normalization
from tf_offline_q.train import export
from tf_offline_q.train import fine_tune
from tf_offline_q.train import multi_game
from tf_offline_q.train import train_eval

GAMES = ('MinAtar-Breakout', 'MinAtar-Asterix', 'MinAtar-Freeway')


def game_pixel(g):
  return 40 + 60 * g


def _write_game(root, game, g, steps=120):
  """`steps` steps of episodes of 30 with constant frames `game_pixel(g)`, 6 actions."""
  rng = np.random.default_rng(g)
  episodes = []
  for _ in range(steps // 30):
    episodes.append((np.full((30, 84, 84), game_pixel(g), np.uint8),
                     rng.integers(0, 6, 30).astype(np.int64),
                     rng.integers(0, 2, 30).astype(np.float32), True))
  replay_dir = os.path.join(root, game, '1', 'replay_logs')
  dqn_replay.write_episodes_as_dopamine(episodes, replay_dir, capacity=steps + 10)
  return replay_dir


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('multi_game_data'))
  for g, game in enumerate(GAMES):
    _write_game(root, game, g)
  return root


def test_batch_counts_are_exact_where_possible_and_unbiased_otherwise():
  assert game_mixture.batch_counts([0.25] * 4, 32) == ([8] * 4, [0.0] * 4, 0)
  fixed, remainder, r = game_mixture.batch_counts([1 / 3] * 3, 8)
  assert fixed == [2, 2, 2] and r == 2 and np.allclose(remainder, 1 / 3)
  fixed, remainder, r = game_mixture.batch_counts([1 / 40] * 40, 32)
  assert fixed == [0] * 40 and r == 32 and np.allclose(remainder, 1 / 40)
  with pytest.raises(ValueError, match='game_weights has 1 weights for the 2 games'):
    game_mixture.normalized_weights(['A', 'B'], [1.0])
  with pytest.raises(ValueError, match='must be finite, >= 0'):
    game_mixture.normalized_weights(['A', 'B'], [1.0, -1.0])


def test_a_mixed_batch_holds_the_intended_proportions(data_root):
  server = reverb_stream.ReplayServer(list(GAMES))
  try:
    for game in GAMES:
      server.fill_from(game, reverb_stream.DopamineSource(
          os.path.join(data_root, game, '1', 'replay_logs')), fraction=1.0)
    # Weights 3:1 over two games: every batch of 8 holds exactly 6 and 2.
    weighted = iter(game_mixture.make_dataset(server.address, GAMES[:2], 8, [3.0, 1.0]))
    # Uniform over three games: 2 rows each in every batch, the 2 left drawn uniformly.
    uniform = iter(game_mixture.make_dataset(server.address, GAMES, 8))
    counts = []
    for dataset, expected in ((weighted, None), (uniform, 'drawn')):
      for _ in range(60 if expected else 5):
        batch = next(dataset)
        game_id = batch.observation['game_id'].numpy()
        frames = batch.observation['frames'].numpy()
        assert game_id.shape == (8, 4) and frames.shape == (8, 4, 84, 84, 4)
        assert (game_id == game_id[:, :1]).all()       # one game per window
        # Each window's newest frames are its game's (the tag matches the table).
        np.testing.assert_array_equal(frames[:, :, 0, 0, -1],
                                      game_pixel(game_id))
        count = np.bincount(game_id[:, 0], minlength=3)
        if expected is None:
          np.testing.assert_array_equal(count, [6, 2, 0])
        else:
          assert (count >= 2).all() and count.sum() == 8
          counts.append(count)
    mean = np.mean(counts, axis=0)
    np.testing.assert_allclose(mean, game_mixture.expected_counts(GAMES, 8), atol=0.5)
    # Under MirroredStrategy each replica's batch holds the proportions by itself.
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    distributed = iter(game_mixture.make_distributed_dataset(
        strategy, server.address, GAMES[:2], 16, [3.0, 1.0]))
    replicas = strategy.experimental_local_results(next(distributed).observation['game_id'])
    assert len(replicas) == 2
    for game_id in replicas:
      np.testing.assert_array_equal(np.bincount(game_id.numpy()[:, 0], minlength=2), [6, 2])
  finally:
    server.stop()


def test_game_checks_name_the_problem():
  with pytest.raises(ValueError, match='full_action_space = True'):
    multi_game.check_games(GAMES[:2], full_action_space=False)
  with pytest.raises(ValueError, match='mixes MinAtar and ALE'):
    multi_game.check_games(['MinAtar-Breakout', 'Pong'], full_action_space=True)
  with pytest.raises(ValueError, match='repeats'):
    multi_game.check_games(['MinAtar-Breakout', 'minatar:breakout'], full_action_space=True)
  with pytest.raises(ValueError, match='no {game} placeholder'):
    multi_game.game_data_source('dopamine:/data/x', 'MinAtar-Breakout', 2)


def test_exported_multi_game_policy_records_its_games_and_plays_each_game(tmp_path):
  """A saved policy with the multi-game observation plays every game's environment
  (`GameIdEnvironment`) in a PyDriver; export_info.json names the game of each id.
  (A random policy: saving the trained networks is tests/agents/test_multi_game.py's.)"""
  envs = multi_game.make_eval_envs(GAMES[:2], 0.0, 10, seed=0)
  time_step_spec, action_spec = multi_game.specs(envs)
  policy = random_tf_policy.RandomTFPolicy(time_step_spec, action_spec)
  exporter = export.PolicyExporter(str(tmp_path), {'greedy_policy': policy},
                                   tf.Variable(7, dtype=tf.int64), interval=0,
                                   info={'games': list(GAMES[:2])})
  exporter.export()
  saved_dir = os.path.join(tmp_path, 'greedy_policy')
  info = json.load(open(os.path.join(saved_dir, 'export_info.json')))
  assert info['games'] == list(GAMES[:2]) and info['train_step'] == 7
  saved = evaluation.load_saved_policy(saved_dir)
  for g, env in enumerate(envs):
    seen = []
    py_driver.PyDriver(env, saved, [lambda t: seen.append(int(t.observation['game_id']))],
                       max_steps=5).run(env.reset())
    assert seen == [g] * 5
  result = evaluation.evaluate_policy(saved, envs[1], num_steps=20, max_episodes=2, seed=1)
  assert result.num_episodes >= 1


def _references(path):
  return normalization.write_reference_scores(path, {
      game: {'random': 0.0, 'dqn_replay': 1.0} for game in GAMES})


@pytest.fixture(scope='module')
def pretrained(data_root, tmp_path_factory):
  """launch/train.py on two games under a MirroredStrategy over 2 logical CPUs
  (`--cpu_replicas=2`): 20 updates, a checkpoint, an evaluation of both games and the
  exported policies (played by launch/evaluate.py below)."""
  root = str(tmp_path_factory.mktemp('pretrained') / 'run')
  references = _references(os.path.join(os.path.dirname(root), 'references.json'))
  command = [
      sys.executable, os.path.join(conftest.REPO, 'launch', 'train.py'), f'--root_dir={root}',
      '--cpu_replicas=2',
      '--gin_file=scaled_ql_resnet34.gin', '--gin_file=scaled_ql_local.gin',
      f'--gin_bindings=GAMES={list(GAMES[:2])}',
      f"--gin_bindings=train_eval.data_source='dopamine:{data_root}/{{game}}/1/replay_logs'",
      f"--gin_bindings=train_eval.reference_scores='{references}'",
      '--gin_bindings=train_eval.batch_size=8', '--gin_bindings=train_eval.num_train_steps=20',
      '--gin_bindings=train_eval.steps_per_run=10', '--gin_bindings=train_eval.eval_interval=20',
      '--gin_bindings=train_eval.eval_steps=30', '--gin_bindings=train_eval.eval_max_episodes=1',
      '--gin_bindings=train_eval.max_episode_frames=30',
      '--gin_bindings=train_eval.policy_save_interval=20',
      '--gin_bindings=train_eval.checkpoint_interval=20']
  done = subprocess.run(command, capture_output=True, text=True, env=conftest.env(), timeout=3600)
  assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
  return root, done.stdout, references


def test_train_py_on_two_games_writes_per_game_records_and_policies(pretrained, tmp_path):
  root, stdout, references = pretrained
  # Data-parallel: two replicas, each with its own mixed batch of 4 (2 per game).
  assert 'MirroredStrategy with 2 replica(s)' in stdout
  assert os.path.exists(os.path.join(root, 'train', 'checkpoints', 'ckpt-20.index'))
  greedy = os.path.join(root, 'policies', 'greedy_policy')
  assert export.exported_step(greedy) == 20
  assert export.read_export_info(greedy)['games'] == list(GAMES[:2])
  records = evaluation.read_eval_records(root)
  assert [(r['game'], r['step']) for r in records] == [(GAMES[1], 20), (GAMES[0], 20)]
  assert all(r['normalized'] == r['mean_return'] for r in records)  # the references 0 / 1
  assert 'eval step 20: 2 games, IQM across 2 games' in stdout
  info = json.load(open(os.path.join(root, 'run.json')))
  assert info['games'] == list(GAMES[:2]) and info['method'] == 'cql_resnet_micro_feature_norm'
  # report.py reads the run as one run per game.
  sys.path.insert(0, os.path.join(conftest.REPO, 'launch'))
  import report  # pylint: disable=g-import-not-at-top
  summary = report.build_report([root], str(tmp_path / 'report'), reps=50,
                                reference_scores=references)
  method = summary['methods']['cql_resnet_micro_feature_norm']
  assert method['games'] == sorted(GAMES[:2]) and method['final_step'] == 20


def _load_evaluate():
  """launch/evaluate.py as a module (its flags are only defined when it runs as a script)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      'tfoq_evaluate_multi_game', os.path.join(conftest.REPO, 'launch', 'evaluate.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_evaluate_py_plays_every_game_of_a_multi_game_policy(pretrained, tmp_path):
  """The exported multi-game policy, every game by default: per-game results in the
  single-game format, normalised scores (reference file) and the IQM across games."""
  root, _, references = pretrained
  greedy = os.path.join(root, 'policies', 'greedy_policy')
  output = str(tmp_path / 'eval.json')
  done = subprocess.run(
      [sys.executable, os.path.join(conftest.REPO, 'launch', 'evaluate.py'),
       f'--policy_dir={greedy}', '--num_steps=10', '--max_episode_frames=15', '--seed=0',
       f'--reference_scores={references}', f'--output={output}'],
      capture_output=True, text=True, env=conftest.env(), timeout=900)
  assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
  report = json.load(open(output))
  assert report['policy_games'] == list(GAMES[:2]) and report['train_step'] == 20
  assert sorted(report['results']) == sorted(GAMES[:2])      # (the JSON's keys are sorted)
  for g, game in enumerate(GAMES[:2]):
    result = report['results'][game]
    assert result['game_id'] == g and result['full_action_space'] is True
    # The budget (10 steps) ends inside an episode, which is finished (cap: 15 steps).
    assert result['num_steps'] >= 10 and max(result['lengths']) <= 15
    assert result['normalized'] == pytest.approx(result['mean_return'])  # references 0 / 1
    assert f'{game}: mean return' in done.stdout
  scores = [report['results'][g]['normalized'] for g in GAMES[:2]]
  assert report['iqm_normalized'] == pytest.approx(np.mean(scores))
  assert 'IQM normalised over 2 game(s)' in done.stdout

  # A subset is played with each game's own id; a game the policy has not seen is refused.
  evaluate = _load_evaluate()
  subset = evaluate.evaluate_saved_policy(
      greedy, [GAMES[1]], str(tmp_path / 'subset.json'), num_steps=5, epsilon=0.0,
      sticky_action_prob=0.0, seed=0, max_episode_frames=5)
  assert list(subset['results']) == [GAMES[1]] and subset['results'][GAMES[1]]['game_id'] == 1
  assert subset['results'][GAMES[1]]['normalized'] is None     # no reference scores given
  with pytest.raises(ValueError, match=r"not trained on \['MinAtar-Freeway'\]: its games are"):
    evaluate.evaluate_saved_policy(greedy, [GAMES[0], GAMES[2]], str(tmp_path / 'x.json'),
                                   num_steps=5, epsilon=0.0, sticky_action_prob=0.0, seed=0)
  assert not os.path.exists(tmp_path / 'x.json')


def _checkpoint_values(run_dir):
  _, prefix = fine_tune.resolve_checkpoint(run_dir)
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.startswith('agent/_q_network/')}


def test_fine_tuning_restores_the_torso_exactly_and_new_heads_are_fresh(pretrained):
  root = pretrained[0]
  saved = _checkpoint_values(root)
  # Fine-tune on a seen game (Asterix: id 1 before, id 0 now) and a new one (Freeway).
  names = [GAMES[1], GAMES[2]]
  network = fine_tune.make_network('cql', names, True, 6, 'resnet', 'micro', 'none', True)
  fresh_heads = network._output.kernel.numpy().copy()
  requested = dict(agent_type='cql', backbone='resnet', variant='micro', aggregation='none',
                   feature_normalization=True, num_actions=6)
  summary = fine_tune.initialize_from_checkpoint(root, network, requested, names)
  assert summary['restored_heads'] == [GAMES[1]] and summary['new_heads'] == [GAMES[2]]
  torso = fine_tune.torso_variables(network)
  saved_torso = sorted(k for k in saved if '/_output/' not in k)
  assert len(torso) == len(saved_torso) > 20
  restored = sorted(v.numpy().tobytes() for v in torso)
  assert restored == sorted(saved[k].tobytes() for k in saved_torso)   # bit for bit
  kernel = network._output.kernel.numpy()
  old_kernel = next(v for k, v in saved.items() if '/_output/kernel' in k)
  np.testing.assert_array_equal(kernel[:, 0], old_kernel[:, 1])       # Asterix's head
  np.testing.assert_array_equal(kernel[:, 1], fresh_heads[:, 1])      # untouched
  np.testing.assert_array_equal(network._output.bias.numpy()[1], 0.0)

  wrong = fine_tune.make_network('cql', names, True, 6, 'resnet', 'micro', 'none', False)
  with pytest.raises(fine_tune.ArchitectureMismatchError,
                     match=r'feature_normalization: True \(pre-trained\) vs False \(now\)'):
    fine_tune.initialize_from_checkpoint(root, wrong, dict(requested, feature_normalization=False),
                                         names)


def test_train_eval_fine_tunes_from_a_run_directory(pretrained, data_root, tmp_path, capsys):
  """With learning rate 0 the fine-tuned run's checkpoint is its initialisation."""
  root = pretrained[0]
  run = str(tmp_path / 'finetune')
  gin.clear_config()
  gin.parse_config([
      f"train_eval.games = ['{GAMES[2]}']", 'train_eval.full_action_space = True',
      "train_eval.backbone = 'resnet'", "train_eval.variant = 'micro'",
      'train_eval.feature_normalization = True', 'train_eval.batch_size = 4',
      'train_eval.num_train_steps = 2', 'train_eval.steps_per_run = 2',
      'train_eval.eval_interval = 0', 'train_eval.policy_save_interval = 0',
      'train_eval.fraction = 0.5', f"train_eval.init_checkpoint = '{root}'",
      f"train_eval.data_source = 'dopamine:{data_root}/{{game}}/1/replay_logs'",
      'CqlC51Agent.learning_rate = 0.0'])
  try:
    train_eval.train_eval(run)
  finally:
    gin.clear_config()
  assert 'fresh heads for' in capsys.readouterr().out
  before, after = _checkpoint_values(root), _checkpoint_values(run)
  for name, value in before.items():
    if '/_output/' not in name:
      np.testing.assert_array_equal(after[name], value, err_msg=name)
  assert json.load(open(os.path.join(run, 'run.json')))['method'] == (
      'cql_resnet_micro_feature_norm_finetune')
