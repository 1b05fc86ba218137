"""launch/generate_logged_replay.py: an online agent's play, logged as DQN-Replay, resumable."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import app

from tests import launch_scripts
from tests.data import helpers
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import online_dqn
from tf_offline_q.data import replay_writer
from tf_offline_q.envs import games

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, 'launch', 'generate_logged_replay.py')
GAME = 'MinAtar-Breakout'


def _load_script():
  return launch_scripts.load('generate_logged_replay')


def _check_replays_the_game(replay_dir, seed, num_checkpoints, game=GAME):
  """Every checkpoint re-plays exactly in a fresh environment seeded for its iteration.

  The environment is deterministic given its seed and the actions, so playing
  the stored actions again must give the stored frames, rewards and episode
  ends: nothing was lost, duplicated or reordered. Returns steps per checkpoint.
  """
  assert dqn_replay.list_checkpoints(replay_dir) == list(range(num_checkpoints))
  env = games.make_env(game, seed=seed)
  steps = []
  for k in range(num_checkpoints):
    episodes = sorted(dqn_replay.iterate_episodes(replay_dir, checkpoints=[k]),
                      key=lambda e: e.episode_id)
    assert episodes and all(e.terminal for e in episodes)
    assert all(e.sampleable_mask()[:-1].all() for e in episodes)
    env.seed(online_dqn.iteration_seed(seed, k))
    for episode in episodes:
      time_step = env.reset()
      for t in range(len(episode)):
        np.testing.assert_array_equal(episode.observation[t], time_step.observation[..., -1])
        time_step = env.step(np.int64(episode.action[t]))
        assert episode.reward[t] == np.clip(time_step.reward, -1, 1)
        assert time_step.is_last() == (t == len(episode) - 1), (k, episode.episode_id, t)
    steps.append(sum(len(e) for e in episodes))
  return steps


def test_replay_memory_stacks_states_as_the_environment_does():
  """Sampled (s, a, r, terminal, s') equal what the environment showed, also after wrapping."""
  env = games.make_env(GAME, seed=3)
  rng = np.random.default_rng(0)
  memory = online_dqn.ReplayMemory(60, (10, 10), 4)
  played = []   # (s, a, r, terminal, s') encoded
  time_step, step = env.reset(), 0
  for _ in range(150):
    action = int(rng.integers(env.num_actions))
    next_step = env.step(np.int64(action))
    obs = online_dqn.encode_observation(time_step.observation, 'cells')
    memory.add(obs[..., -1], action, float(next_step.reward), bool(next_step.is_last()), step)
    played.append((obs, action, float(next_step.reward), bool(next_step.is_last()),
                   online_dqn.encode_observation(next_step.observation, 'cells')))
    step += 1
    time_step = next_step
    if next_step.is_last():
      time_step, step = env.reset(), 0
  assert sum(p[3] for p in played[-60:]) >= 2   # episodes start inside the window
  indices = memory.sampleable_indices()
  assert len(indices) == 60 - 1 - 3             # not the newest, not the oldest 3
  state, action, reward, terminal, next_state = memory.gather(indices)
  for b, i in enumerate(indices):
    serial = 150 - 60 + (i - 150 % 60) % 60     # chronological step of storage index i
    s, a, r, term, s2 = played[serial]
    np.testing.assert_array_equal(state[b], s)
    assert (action[b], reward[b], terminal[b]) == (a, r, term)
    if not term:
      np.testing.assert_array_equal(next_state[b], s2)
  state, *_ = memory.sample(8, rng)
  assert state.shape == (8, 10, 10, 4)


def test_epsilon_decays_as_dopamine():
  config = online_dqn.AgentConfig(min_replay_history=100, epsilon_decay_steps=1000,
                                  epsilon_train=0.1)
  eps = [online_dqn.linearly_decaying_epsilon(s, config) for s in (0, 100, 600, 1100, 5000)]
  np.testing.assert_allclose(eps, [1.0, 1.0, 0.55, 0.1, 0.1])


def test_cell_torso_reads_frames_and_cells_alike():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  env = games.make_env(GAME, seed=0)
  obs = env.reset().observation
  torso = online_dqn.CellTorso()
  from_frames = torso(tf.constant(obs[None]))
  from_cells = torso(tf.constant(online_dqn.encode_observation(obs, 'cells')[None]))
  np.testing.assert_allclose(from_frames.numpy(), from_cells.numpy())
  with pytest.raises(ValueError, match="torso='cells'"):
    online_dqn.CellTorso()(tf.zeros([1, 32, 32, 4], tf.uint8))


def test_killed_run_resumes_without_losing_or_duplicating(tmp_path):
  """A real kill mid-run; the re-run continues; files re-play the game exactly; readers read them."""
  root = str(tmp_path)
  args = [sys.executable, SCRIPT, f'--root_dir={root}', f'--game={GAME}', '--iterations=3',
          '--steps_per_iteration=300', '--min_replay_history=100', '--replay_capacity=500',
          '--target_update_period=20', '--seed=5', '--progress_secs=0']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  run_dir = os.path.join(root, GAME, '1')
  first_state = os.path.join(run_dir, 'agent', 'iteration-1', 'state.json')
  proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while not os.path.exists(first_state) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  saved_one = os.path.exists(first_state)
  proc.send_signal(signal.SIGKILL)
  output = proc.communicate()[0]
  assert saved_one, output[-3000:]
  assert not os.path.exists(os.path.join(run_dir, 'agent', 'iteration-3')), 'killed too late'
  replay_dir = os.path.join(run_dir, 'replay_logs')
  assert not dqn_replay.read_manifest(replay_dir).get('finished')
  with open(os.path.join(replay_dir, '$store$_action_ckpt.9.gz'), 'wb') as f:
    f.write(b'left by a killed writer')

  done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr[-3000:]
  assert 'resuming after iteration' in done.stdout
  assert not os.path.exists(os.path.join(replay_dir, '$store$_action_ckpt.9.gz'))
  manifest = dqn_replay.read_manifest(replay_dir)
  assert manifest.get('finished') and manifest['metadata']['generator'] == 'generate_logged_replay'

  steps = _check_replays_the_game(replay_dir, seed=5, num_checkpoints=3)
  with open(os.path.join(run_dir, 'learning_curve.json')) as f:
    curve = json.load(f)['iterations']
  assert [row['iteration'] for row in curve] == [0, 1, 2]
  assert [row['steps'] for row in curve] == steps
  assert [row['env_steps'] for row in curve] == np.cumsum(steps).tolist()
  assert all(s >= 300 for s in steps)
  assert sum(row['updates'] for row in curve) > 0
  with open(os.path.join(run_dir, 'learning_curve.csv')) as f:
    assert len(f.read().splitlines()) == 4

  # The existing readers: subsets, and Reverb with Dopamine's sampling rules.
  first = list(dqn_replay.iterate_episodes(replay_dir, fraction=0.5, mode='first'))
  uniform = list(dqn_replay.iterate_episodes(replay_dir, fraction=0.5, mode='uniform'))
  for subset in (first, uniform):
    assert 0 < sum(len(e) for e in subset) < sum(steps)
  from tf_offline_q.data import reverb_stream  # pylint: disable=g-import-not-at-top
  server = reverb_stream.ReplayServer(['T'], validate_games=False)
  try:
    stats = server.fill_from('T', reverb_stream.DopamineSource(replay_dir), fraction=1.0)
    valid = sum(len(helpers.DopamineReference(replay_dir, k, 4, 3, 0.99).valid_indices())
                for k in range(3))
    assert stats.items == server.num_items('T') == valid
    traj = next(iter(reverb_stream.make_dataset(server.address, 'T', batch_size=4)))
    assert traj.observation.shape == (4, 4, 84, 84, 4)
  finally:
    server.stop()


def test_resume_replays_a_checkpoint_written_before_the_agent_was_saved(tmp_path):
  """Killed between writing checkpoint N and saving the agent: N is played again and replaced."""
  script = _load_script()
  root = str(tmp_path)
  config = online_dqn.AgentConfig(min_replay_history=10**6)   # no learning: fast
  kwargs = dict(steps_per_iteration=150, config=config, seed=2, progress_secs=1e9)
  replay_dir = dqn_replay.dopamine_replay_dir(root, GAME, 1)
  # A first run killed in its first iteration left a dataset but no agent: started over.
  replay_writer.ReplayDirWriter.create(replay_dir, {'generator': script.GENERATOR}).close()
  script.generate_game(root, GAME, 1, iterations=1, **kwargs)
  agent_dir = os.path.join(root, GAME, '1', 'agent')
  shutil.copytree(agent_dir, str(tmp_path / 'saved_agent'))
  script.generate_game(root, GAME, 1, iterations=2, **kwargs)
  shutil.rmtree(agent_dir)
  shutil.copytree(str(tmp_path / 'saved_agent'), agent_dir)   # the agent after iteration 1 only
  curve = script.generate_game(root, GAME, 1, iterations=3, **kwargs)
  assert [row['iteration'] for row in curve] == [0, 1, 2]
  steps = _check_replays_the_game(replay_dir, seed=2, num_checkpoints=3)
  assert [row['steps'] for row in curve] == steps

  with pytest.raises(app.UsageError, match='seed: saved 2, now 3'):
    script.generate_game(root, GAME, 1, iterations=4, **dict(kwargs, seed=3))
  other = str(tmp_path / 'other')
  dqn_replay.write_episodes_as_dopamine(helpers.synthetic_episodes([20, 30]),
                                        dqn_replay.dopamine_replay_dir(other, GAME, 1), 100)
  with pytest.raises(app.UsageError, match='--overwrite'):
    script.generate_game(other, GAME, 1, iterations=1, **kwargs)


def test_heuristic_behaviour_logs_its_play_with_signal_and_resumes(tmp_path):
  """--agent=heuristic: the epsilon schedule over Asterix's script, no updates, above random."""
  script = _load_script()
  root, game = str(tmp_path), 'MinAtar-Asterix'
  config = online_dqn.AgentConfig(agent_type='heuristic', min_replay_history=100,
                                  epsilon_decay_steps=200, epsilon_train=0.0)
  kwargs = dict(steps_per_iteration=400, config=config, seed=4, progress_secs=1e9)
  script.generate_game(root, game, 1, iterations=2, **kwargs)
  curve = script.generate_game(root, game, 1, iterations=3, **kwargs)   # resumed
  replay_dir = dqn_replay.dopamine_replay_dir(root, game, 1)
  steps = _check_replays_the_game(replay_dir, seed=4, num_checkpoints=3, game=game)
  assert [row['steps'] for row in curve] == steps
  assert all(row['updates'] == 0 for row in curve)
  assert curve[-1]['epsilon'] == 0.0
  # Iteration 0 is mostly uniform play (epsilon 1 for 100 steps, then falling); the
  # last is the script's: Asterix's random play gets about 0.5 per episode.
  assert curve[-1]['mean_return'] > 2.0 > curve[0]['mean_return'], curve
  with pytest.raises(app.UsageError, match='agent_type: saved .heuristic., now .dqn.'):
    script.generate_game(root, game, 1, iterations=4,
                         **dict(kwargs, config=online_dqn.AgentConfig()))


def test_heuristic_behaviour_names_the_games_that_have_one(tmp_path):
  script = _load_script()
  config = online_dqn.AgentConfig(agent_type='heuristic')
  with pytest.raises(app.UsageError, match='No heuristic policy.*MinAtar-Asterix, MinAtar-Freeway'):
    script.generate_game(str(tmp_path), GAME, 1, iterations=1, steps_per_iteration=10,
                         config=config)
  with pytest.raises(ValueError, match="needs torso 'cells'"):
    online_dqn.AgentConfig(agent_type='heuristic', torso='small').check()
