"""DQN-Replay normalised Atari scores (the paper's Table 3).

Table 3 gives, per game, the average return of a random agent (evaluated with
sticky actions) and the average return of the trajectories in the DQN (Nature)
replay dataset; both from Kumar et al. (2021b), "DR3".

The paper's text puts random at 0 and DQN-Replay at 100, but every number it
reports (IQM 1.03, 1.56, 1.93, ...) is on the *fraction* scale. This module
uses the fraction scale throughout and says so in the function name:

  dqn_normalized_score(game, score) = (score - random) / (dqn_replay - random)

so random play scores 0.0 and the DQN-Replay average scores 1.0 (multiply by
100 for the percentage scale).
"""
import types
from typing import Mapping, NamedTuple, Sequence, Union

import numpy as np


class ReferenceScores(NamedTuple):
  """Raw episode returns that map to normalised scores 0.0 and 1.0."""
  random: float
  dqn_replay: float


# Table 3 of the paper: average returns (5 runs) of a random agent, and the
# average return of the DQN (Nature) replay dataset trajectories.
TABLE_3 = types.MappingProxyType({
    'Asterix': ReferenceScores(random=279.1, dqn_replay=3185.2),
    'Breakout': ReferenceScores(random=1.3, dqn_replay=104.9),
    'Pong': ReferenceScores(random=-20.3, dqn_replay=14.5),
    'Qbert': ReferenceScores(random=155.0, dqn_replay=8249.7),
    'Seaquest': ReferenceScores(random=81.8, dqn_replay=1597.4),
})

NORMALIZED_GAMES = tuple(TABLE_3)


def normalization_game_name(game: str) -> str:
  """The Table 3 spelling of `game` ('pong' -> 'Pong').

  Raises:
    ValueError: `game` is not in Table 3 (the message lists the games).
  """
  if isinstance(game, str):
    for name in TABLE_3:
      if name.lower() == game.strip().lower():
        return name
  raise ValueError(
      f'No DQN-Replay reference scores for game {game!r}: Table 3 only covers '
      f'{", ".join(NORMALIZED_GAMES)}.')


def reference_scores(game: str) -> ReferenceScores:
  """Random and DQN-Replay average returns of `game` (Table 3)."""
  return TABLE_3[normalization_game_name(game)]


def dqn_normalized_score(
    game: str, score: Union[float, Sequence[float], np.ndarray]
) -> Union[float, np.ndarray]:
  """DQN-Replay normalised score, on the fraction scale: random 0, DQN 1.0.

  Args:
    game: one of Table 3's games (any case).
    score: a raw episode return, or an array of them (any shape).

  Returns:
    `(score - random) / (dqn_replay - random)`: a float for a scalar score,
    else a float64 array of `score`'s shape.

  Raises:
    ValueError: `game` is not in Table 3 (the message lists the games).
  """
  row = reference_scores(game)
  normalized = ((np.asarray(score, dtype=np.float64) - row.random) /
                (row.dqn_replay - row.random))
  if normalized.ndim == 0:
    return float(normalized)
  return normalized


def dqn_normalized_scores(
    raw_scores: Mapping[str, Union[float, Sequence[float]]]
) -> dict:
  """`dqn_normalized_score` applied to every entry of a {game: score} dict."""
  return {game: dqn_normalized_score(game, s) for game, s in raw_scores.items()}
