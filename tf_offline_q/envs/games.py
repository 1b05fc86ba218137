"""One entry point for every game the project plays: ALE Atari, MinAtar, continuous control.

`canonical_game_name` and `make_env` dispatch on the name: `MinAtar-*` names
(any spelling `minatar.canonical_game_name` accepts) go to
`tf_offline_q.envs.minatar`, everything else to the ALE
(`tf_offline_q.envs.atari`). Both environments give the same specs (uint8
`[84, 84, 4]` observations, int64 actions) and the same protocol arguments, so
data files, Reverb tables, agents and evaluation do not care which it is.

Continuous-control names (`continuous.ENV_NAMES`: 'Hopper-v5', 'Walker2d-v5',
'HalfCheetah-v5', 'PointMaze_{UMaze,Medium,Large}[Dense]-v3', 'FetchPush-v4',
'FetchPickAndPlace-v4'; any spelling `continuous.canonical_env_name` accepts)
go to `tf_offline_q.envs.continuous` and are checked first. Their
environments have float32 vector observations and float32 actions in [-1, 1].
"""
from typing import List, Optional, Tuple

from tf_agents.environments import py_environment

from tf_offline_q import specs
from tf_offline_q.envs import continuous
from tf_offline_q.envs import minatar


def canonical_game_name(name: str) -> str:
  """'pong' -> 'Pong', 'minatar:breakout' -> 'MinAtar-Breakout'.

  Raises:
    ValueError: unknown game, naming it and listing the valid ones.
  """
  if continuous.is_continuous_env(name):
    return continuous.canonical_env_name(name)
  if minatar.is_minatar_game(name):
    return minatar.canonical_game_name(name)
  from tf_offline_q.envs import atari  # pylint: disable=g-import-not-at-top
  try:
    return atari.canonical_game_name(name)
  except ValueError as e:
    raise ValueError(f'{e}; MinAtar games: {", ".join(minatar.GAMES)}; '
                     'continuous-control environments: '
                     f'{", ".join(continuous.ENV_NAMES)}') from e


def full_action_count(game: str) -> int:
  """Size of `game`'s full action set: 18 for the ALE, 6 for MinAtar."""
  if minatar.is_minatar_game(game):
    return minatar.NUM_ACTIONS_FULL
  return specs.NUM_ACTIONS_FULL


def minimal_action_set(game: str) -> Tuple[int, ...]:
  """`game`'s minimal action set as indices into its full set (ALE: the ROM's
  own list, `atari.minimal_action_set`; MinAtar: `Environment.minimal_action_set`).
  Pong: (0, 1, 3, 4, 11, 12); MinAtar-Breakout: (0, 1, 3)."""
  if minatar.is_minatar_game(game):
    return tuple(int(a) for a in minatar.make_minatar_env(game, full_action_space=False).action_set)
  if continuous.is_continuous_env(game):
    raise ValueError(f'{game} has continuous actions: no discrete action set')
  from tf_offline_q.envs import atari  # pylint: disable=g-import-not-at-top
  return atari.minimal_action_set(game)


def valid_games() -> List[str]:
  """Every ALE game, then the MinAtar games, then the continuous-control environments."""
  from tf_offline_q.envs import atari  # pylint: disable=g-import-not-at-top
  return atari.valid_games() + list(minatar.GAMES) + list(continuous.ENV_NAMES)


def make_env(game: str,
             sticky_action_prob: float = 0.25,
             full_action_space: bool = False,
             max_episode_frames: Optional[int] = 108_000,
             stack_size: int = specs.STACK_SIZE,
             seed: Optional[int] = None) -> py_environment.PyEnvironment:
  """The evaluation environment of `game` (see `make_atari_env`, `make_minatar_env`,
  `continuous.make_continuous_env`).

  For a continuous-control environment the Atari-only arguments
  (`sticky_action_prob`, `full_action_space`, `max_episode_frames`,
  `stack_size`) are ignored: they have no meaning there, and the shared
  evaluation code passes them for every game. Its episodes are capped by
  gymnasium's registered time limit; only `seed` is used.

  Args:
    game: an ALE, MinAtar or continuous-control name.
    sticky_action_prob: paper 0.25.
    full_action_space: 18 ALE / 6 MinAtar actions instead of the game's minimal set.
    max_episode_frames: raw-frame cap (ALE frames; MinAtar frames = agent steps).
    stack_size: frames per observation.
    seed: environment seed (None: entropy).

  Raises:
    ValueError: unknown `game`, listing the valid names.
  """
  if continuous.is_continuous_env(game):
    return continuous.make_continuous_env(game, seed=seed)
  if minatar.is_minatar_game(game):
    return minatar.make_minatar_env(game, sticky_action_prob, full_action_space,
                                    max_episode_frames, stack_size, seed)
  from tf_offline_q.envs import atari  # pylint: disable=g-import-not-at-top
  canonical_game_name(game)  # An unknown name: the error lists every valid one.
  return atari.make_atari_env(game, sticky_action_prob=sticky_action_prob,
                              full_action_space=full_action_space,
                              max_episode_frames=max_episode_frames,
                              stack_size=stack_size, seed=seed)
