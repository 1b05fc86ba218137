"""Recorded actions mapped to the full action set (DQN-Replay's minimal sets, Scaled Q-learning).

DQN-Replay (the Dopamine files and TFDS `rlu_atari`) was logged by agents
playing each game's *minimal* action set, so a stored action `a` is an index
into that game's set: Pong's 6 actions are the ALE actions
(0, 1, 3, 4, 11, 12) = NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE, and a
stored 3 means LEFT (ALE action 4). A network sharing one action set across
games (Scaled Q-learning: the full set, 18 ALE / 6 MinAtar actions) needs the
full-set index instead:

  full_action = minimal_set[a]        (minimal_set: `games.minimal_action_set`)

`minimal_set` is the ALE's own list for the game's ROM (ale-py ships the
ROMs: nothing is downloaded), and the full-set environment
(`full_action_space=True`) plays ALE action `i` for index `i`, so the mapped
actions press the keys that were recorded.

Which set a dataset was recorded with (`recorded_action_set`):

  * our Dopamine directories say it: `launch/generate_dqn_replay.py` and
    `launch/generate_logged_replay.py` write `full_action_space` into the
    manifest's metadata;
  * otherwise an ALE game's data is taken to be DQN-Replay's, the minimal
    set (the published Dopamine files, TFDS `rlu_atari`, our TFDS
    conversions); a MinAtar game's is not known (there is no published
    MinAtar data), and its actions are used as they are;
  * `train_eval.data_action_set = 'minimal'` or `'full'` says it instead.

`action_map` then decides, for the set the environment plays
(`full_action_space`):

  data \\ environment   minimal           full
  minimal              as recorded       mapped to the full set
  full                 refused (error)   as recorded

A multi-game run plays the full set (`train/multi_game.py`), so an ALE
multi-game run on DQN-Replay data is mapped without further settings.
"""
import dataclasses
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Tuple

import numpy as np

from tf_offline_q.data import dqn_replay

MINIMAL = 'minimal'
FULL = 'full'
DATA_ACTION_SETS = (MINIMAL, FULL)

Episode = dqn_replay.Episode
DataError = dqn_replay.DataError


class ActionMap(NamedTuple):
  """Recorded (minimal-set) action index -> full-set index, for one game.

  Attributes:
    game: the game, for messages.
    full_indices: `full_indices[a]` is the full-set index of recorded action `a`.
  """
  game: str
  full_indices: Tuple[int, ...]

  def __call__(self, action: np.ndarray, where: str) -> np.ndarray:
    """int64 `[L]` recorded actions -> int64 `[L]` full-set actions.

    Raises:
      DataError: naming `where` for an action outside the minimal set.
    """
    action = np.asarray(action, dtype=np.int64)
    outside = (action < 0) | (action >= len(self.full_indices))
    if outside.any():
      t = int(np.flatnonzero(outside)[0])
      raise DataError(
          f'{where}: action {int(action[t])} at step {t} is outside {self.game}\'s minimal '
          f'action set ({len(self.full_indices)} actions, which the data is taken to index). '
          'If the data was recorded with the full action set, set '
          "train_eval.data_action_set = 'full' (reverb_server.py: --data_action_set=full).")
    return np.asarray(self.full_indices, dtype=np.int64)[action]


def check_data_action_set(value: Optional[str], name: str = 'train_eval.data_action_set'):
  if value is not None and value not in DATA_ACTION_SETS:
    raise ValueError(f'{name} must be one of {DATA_ACTION_SETS} or None (what the data '
                     f'records, else DQN-Replay\'s minimal set), got {value!r}')


def recorded_action_set(source) -> Optional[str]:
  """'full' or 'minimal' if the source records the set it was played with
  (our Dopamine directories: the manifest's `full_action_space`), else None."""
  replay_dir = getattr(source, 'replay_dir', None)
  if replay_dir is None:
    return None
  manifest = dqn_replay.read_manifest(replay_dir)
  if manifest is None:
    return None
  full = manifest.get('metadata', {}).get('full_action_space')
  if full is None:
    return None
  return FULL if full else MINIMAL


def data_action_set(game: str, source, override: Optional[str] = None) -> Optional[str]:
  """The set `source`'s actions index: `override`, else what the source
  records, else DQN-Replay's minimal set for an ALE game (None: unknown, for
  a MinAtar game)."""
  check_data_action_set(override)
  if override is not None:
    return override
  recorded = recorded_action_set(source)
  if recorded is not None:
    return recorded
  from tf_offline_q.envs import minatar  # pylint: disable=g-import-not-at-top
  return None if minatar.is_minatar_game(game) else MINIMAL


def action_map(game: str, source, full_action_space: bool,
               override: Optional[str] = None) -> Optional[ActionMap]:
  """The map of `source`'s actions to the environment's set (module doc table).

  Returns:
    An `ActionMap` when minimal-set data meets a full-set environment; None
    when the recorded actions are used as they are.
  Raises:
    ValueError: full-set data and a minimal-set environment (naming the
      setting to change), or a bad `override`.
  """
  recorded = data_action_set(game, source, override)
  if recorded == MINIMAL and full_action_space:
    from tf_offline_q.envs import games as games_lib  # pylint: disable=g-import-not-at-top
    return ActionMap(game, tuple(games_lib.minimal_action_set(game)))
  if recorded == FULL and not full_action_space:
    raise ValueError(
        f'The {game} data ({getattr(source, "replay_dir", source)}) was recorded with the full '
        'action set, but the environment plays the minimal set: set '
        'train_eval.full_action_space = True (a full-set action has no minimal-set index)')
  return None


def map_actions(episodes: Iterable[Episode], mapping: Optional[ActionMap],
                where: Callable[[Episode], str]) -> Iterator[Episode]:
  """`episodes` with their actions mapped by `mapping` (None: unchanged);
  `where(episode)` names the file (or dataset) of an episode in errors."""
  for episode in episodes:
    if mapping is not None:
      episode = dataclasses.replace(episode, action=mapping(episode.action, where(episode)))
    yield episode
