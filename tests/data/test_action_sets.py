"""DQN-Replay's minimal action sets mapped to the full set (data/action_sets.py).

Tiny Dopamine directories written here: published-style (no manifest: taken
as minimal-set data) and ours with a manifest recording the action set. The
ALE is only asked for its action sets (no emulator steps).
"""
import os

import ale_py
import gymnasium as gym
import numpy as np
import pytest

from tf_offline_q.data import action_sets
from tf_offline_q.data import dqn_replay
from tf_offline_q.data import game_mixture
from tf_offline_q.data import replay_writer
from tf_offline_q.data import reverb_stream
from tf_offline_q.envs import atari
from tf_offline_q.envs import games as games_lib
from tf_offline_q.train import multi_game
from tf_offline_q.train import train_eval

PONG_MINIMAL = (0, 1, 3, 4, 11, 12)   # NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE


def _episodes(actions, pixel=0, length=20):
  """Episodes of `length` steps with the given actions (cycled), constant frames."""
  actions = np.resize(np.asarray(actions, np.int64), 2 * length)
  return [(np.full((length, 84, 84), pixel, np.uint8), actions[i * length:(i + 1) * length],
           np.zeros(length, np.float32), True) for i in range(2)]


def _write(replay_dir, actions, pixel=0, metadata=None):
  """Published layout (no manifest), or ours (`metadata`: a manifest recording it)."""
  if metadata is None:
    dqn_replay.write_episodes_as_dopamine(_episodes(actions, pixel), replay_dir, capacity=64)
    return replay_dir
  buffer = dqn_replay.DopamineReplayWriter(64)
  for frames, acts, rewards, terminal in _episodes(actions, pixel):
    for t in range(len(frames)):
      buffer.add(frames[t], acts[t], rewards[t], terminal and t == len(frames) - 1)
  with replay_writer.ReplayDirWriter.create(replay_dir, metadata) as out:
    out.write_checkpoint(0, buffer)
    out.finish()
  return replay_dir


def test_minimal_sets_are_the_ales_own_and_the_full_set_is_in_ale_order():
  assert atari.minimal_action_set('pong') == PONG_MINIMAL
  # The same list as the ALE's gymnasium environment plays with the minimal set.
  gym.register_envs(ale_py)
  env = gym.make('ALE/Pong-v5', full_action_space=False)
  assert tuple(int(a.value) for a in env.unwrapped._action_set) == PONG_MINIMAL  # pylint: disable=protected-access
  env.close()
  # Our full-set environment presses ALE action i for index i.
  full = atari.make_atari_env('Pong', full_action_space=True, seed=0)
  assert [int(a.value) for a in full._action_set] == list(range(18))  # pylint: disable=protected-access
  assert games_lib.minimal_action_set('Breakout') == (0, 1, 3, 4)
  assert games_lib.minimal_action_set('MinAtar-Breakout') == (0, 1, 3)


def test_a_dqn_replay_directory_is_mapped_to_the_full_set(tmp_path):
  replay_dir = _write(str(tmp_path / 'Pong'), list(range(6)))
  source = reverb_stream.DopamineSource(replay_dir)
  mapping = action_sets.action_map('Pong', source, full_action_space=True)
  assert mapping.full_indices == PONG_MINIMAL
  recorded = [e.action for e in reverb_stream.iterate_source(source, fraction=1.0)]
  mapped = [e.action for e in reverb_stream.iterate_source(source, fraction=1.0,
                                                          action_map=mapping)]
  for raw, full in zip(recorded, mapped):
    np.testing.assert_array_equal(full, np.asarray(PONG_MINIMAL)[raw])
  assert {int(a) for e in mapped for a in e} == set(PONG_MINIMAL)
  # Played on the minimal set, the recorded actions are kept.
  assert action_sets.action_map('Pong', source, full_action_space=False) is None


def test_recorded_action_sets_decide_and_full_set_data_is_not_mapped(tmp_path):
  full = reverb_stream.DopamineSource(
      _write(str(tmp_path / 'full'), [17, 2], metadata={'full_action_space': True}))
  minimal = reverb_stream.DopamineSource(
      _write(str(tmp_path / 'minimal'), [5], metadata={'full_action_space': False}))
  assert action_sets.recorded_action_set(full) == 'full'
  assert action_sets.recorded_action_set(minimal) == 'minimal'
  assert action_sets.action_map('Pong', full, full_action_space=True) is None
  assert action_sets.action_map('Pong', minimal, True).full_indices == PONG_MINIMAL
  with pytest.raises(ValueError, match='recorded with the full action set.*'
                     'full_action_space = True'):
    action_sets.action_map('Pong', full, full_action_space=False)
  # An explicit setting overrides; MinAtar data without a record is used as it is.
  assert action_sets.action_map('Pong', full, True, override='minimal') is not None
  unknown = reverb_stream.DopamineSource(str(tmp_path / 'nothing'))
  assert action_sets.action_map('MinAtar-Breakout', unknown, True) is None
  with pytest.raises(ValueError, match="data_action_set must be one of"):
    action_sets.check_data_action_set('18')


def test_an_action_outside_the_minimal_set_names_the_file(tmp_path):
  replay_dir = _write(str(tmp_path / 'Pong'), [0, 1, 7])   # 7: not one of Pong's 6
  source = reverb_stream.DopamineSource(replay_dir)
  mapping = action_sets.action_map('Pong', source, full_action_space=True)
  action_file = dqn_replay.checkpoint_filename(replay_dir, '$store$_action', 0)
  with pytest.raises(dqn_replay.DataError) as e:
    list(reverb_stream.iterate_source(source, fraction=1.0, action_map=mapping))
  message = str(e.value)
  assert action_file in message and 'action 7' in message
  assert "Pong's minimal action set (6 actions" in message and "data_action_set = 'full'" in message


def test_multi_game_data_of_two_ale_games_holds_full_set_actions(tmp_path):
  """train_eval's fill of each game's table (DQN-Replay-style files, no manifest), then
  the mixed batches: every action is the full-set index of the recorded one."""
  games = multi_game.check_games(['Pong', 'Breakout'], full_action_space=True)
  root = str(tmp_path)
  recorded = {'Pong': 5, 'Breakout': 3}          # Pong LEFTFIRE, Breakout LEFT
  for g, game in enumerate(games):
    _write(os.path.join(root, game, '1', 'replay_logs'), [recorded[game]], pixel=g + 1)
  data_source = f'dopamine:{root}/{{game}}/1/replay_logs'
  server = reverb_stream.ReplayServer(games)
  try:
    for game in games:
      train_eval._fill_replay(  # pylint: disable=protected-access
          server, game, multi_game.game_data_source(data_source, game, len(games)), 1.0,
          'uniform', 0, multi_game.num_actions(games), full_action_space=True)
    batch = next(iter(game_mixture.make_dataset(server.address, games, 8)))
  finally:
    server.stop()
  game_id = batch.observation['game_id'].numpy()[:, 0]
  action = batch.action.numpy()
  assert sorted(set(game_id)) == [0, 1]
  np.testing.assert_array_equal(action[game_id == 0], 12)   # Pong's LEFTFIRE in the full set
  np.testing.assert_array_equal(action[game_id == 1], 4)    # Breakout's LEFT
