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

Games outside Table 3 (e.g. MinAtar's 'MinAtar-Breakout') have no row in the
paper; their reference scores are measured by our own scripts and kept in a
JSON reference-scores file (`load_reference_scores` / `write_reference_scores`):

  {"MinAtar-Breakout": {"random": 0.5, "dqn_replay": 8.0}, ...}
                                                (numbers only illustrative)

  random       mean return of the uniformly random policy under the evaluation
               protocol (the meaning of Table 3's "Random" column);
  dqn_replay   average episode return of the offline dataset used for that game
               (the meaning Table 3 gives its "DQN-Replay" column: the average
               return of the trajectories in the dataset), not the return of a
               separately trained DQN.

Both must be finite numbers and differ. An optional string field "one_means"
says what the 1.0 point is when it is not the dataset average (D4RL datasets:
"expert", the D4RL ref_max_score; Fetch: "success rate 1"); report.py puts it
in its axis labels and table (`reference_labels`). Other fields of a game's
entry are ignored. The lookup functions take such scores as `extra`: they are matched
case-insensitively like Table 3, and may only *add* games; a game that is
also in Table 3 is an error (Table 3 is never overridden).
"""
import json
import math
import numbers
import os
import types
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

from tf_offline_q import files


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

# Fields of one game's entry in a reference-scores file.
REFERENCE_FIELDS = ReferenceScores._fields  # ('random', 'dqn_replay')

ExtraScores = Optional[Mapping[str, ReferenceScores]]


# ---------------------------------------------------------- validation
def _check_number(value: Any, where: str) -> float:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
      not math.isfinite(float(value))):
    raise ValueError(f'{where} must be a finite number, got {value!r}')
  return float(value)


def _as_reference_scores(value: Any, where: str,
                         allow_pairs: bool = True) -> ReferenceScores:
  """`value` ({"random", "dqn_replay"}, or a (random, dqn_replay) pair such as
  a `ReferenceScores` if `allow_pairs`) checked.

  `where` names the entry in errors, e.g. "scores.json: game 'X'".
  """
  if isinstance(value, Mapping):
    missing = [k for k in REFERENCE_FIELDS if k not in value]
    if missing:
      raise ValueError(
          f'{where}: missing field{"s" if len(missing) > 1 else ""} '
          f'{", ".join(repr(k) for k in missing)} (each game needs '
          f'{{"random": float, "dqn_replay": float}})')
    random, dqn_replay = value['random'], value['dqn_replay']
  elif (allow_pairs and isinstance(value, Sequence) and
        not isinstance(value, str) and len(value) == 2):
    random, dqn_replay = value
  else:
    raise ValueError(
        f'{where}: must be an object {{"random": float, "dqn_replay": float}}, '
        f'got {value!r}')
  row = ReferenceScores(
      random=_check_number(random, f'{where}: field "random"'),
      dqn_replay=_check_number(dqn_replay, f'{where}: field "dqn_replay"'))
  if row.dqn_replay == row.random:
    raise ValueError(
        f'{where}: fields "dqn_replay" and "random" are equal ({row.random}), '
        'so scores cannot be normalised (division by zero)')
  return row


def validate_reference_scores(scores: Mapping[str, Any],
                              where: str = 'reference scores',
                              allow_pairs: bool = True
                             ) -> Dict[str, ReferenceScores]:
  """Checked copy of {game: ReferenceScores} for games outside Table 3.

  Values are {"random": .., "dqn_replay": ..} mappings or, if `allow_pairs`,
  (random, dqn_replay) pairs such as `ReferenceScores`.

  Raises:
    ValueError (prefixed by `where`): not a mapping, an empty or non-string
      game name, two names equal up to case, a game in Table 3, or a bad entry
      (missing field, non-finite or non-number value, dqn_replay == random).
  """
  if not isinstance(scores, Mapping):
    raise ValueError(
        f'{where}: must be an object {{"GameName": {{"random": float, '
        f'"dqn_replay": float}}, ...}}, got {type(scores).__name__}')
  checked, seen = {}, {}
  table3 = {name.lower(): name for name in TABLE_3}
  for game, value in scores.items():
    if not isinstance(game, str) or not game.strip():
      raise ValueError(f'{where}: game names must be non-empty strings, got '
                       f'{game!r}')
    key = game.strip().lower()
    if key in table3:
      raise ValueError(
          f'{where}: game {game!r} is in Table 3 (as {table3[key]!r}); extra '
          'reference scores can only add games, not override Table 3')
    if key in seen:
      raise ValueError(f'{where}: games {seen[key]!r} and {game!r} are the '
                       'same game (names are case-insensitive)')
    seen[key] = game
    checked[game.strip()] = _as_reference_scores(
        value, f'{where}: game {game!r}', allow_pairs)
  return checked


# ------------------------------------------------------------------ file
def _reject_duplicate_keys(pairs):
  result = {}
  for key, value in pairs:
    if key in result:
      raise ValueError(f'duplicate key {key!r}')
    result[key] = value
  return result


def load_reference_scores(path: str) -> Dict[str, ReferenceScores]:
  """Reads a reference-scores JSON file (module docstring) into {game: row}.

  Raises:
    FileNotFoundError: `path` does not exist (named).
    ValueError: naming `path` (and the game and field where it applies) for
      invalid JSON, a non-object, a missing field, a non-finite or non-number
      value, dqn_replay == random, or a game that is in Table 3.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Reference scores file {path} does not exist')
  with open(path) as f:
    text = f.read()
  try:
    data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
  except ValueError as e:  # json.JSONDecodeError is a ValueError.
    raise ValueError(f'{path}: not a valid reference-scores JSON file ({e})'
                     ) from e
  return validate_reference_scores(data, where=path, allow_pairs=False)


DATASET_AVERAGE = 'dataset average'   # what 1.0 is unless a file says otherwise


def reference_labels(path: str) -> Dict[str, str]:
  """{game: what its 1.0 point is} from a reference-scores file's optional
  "one_means" fields (games without one: `DATASET_AVERAGE`).

  Raises:
    ValueError: naming `path` and the game, for a "one_means" that is not a
      non-empty string (the file is otherwise checked by `load_reference_scores`).
  """
  path = os.fspath(path)
  scores = load_reference_scores(path)
  with open(path) as f:
    data = json.load(f)
  labels = {}
  for game, value in data.items():
    label = value.get('one_means', DATASET_AVERAGE) if isinstance(value, Mapping) else (
        DATASET_AVERAGE)
    if not isinstance(label, str) or not label.strip():
      raise ValueError(f'{path}: game {game!r}: "one_means" must be a non-empty string '
                       f'(what a normalised score of 1.0 is), got {label!r}')
    labels[game.strip()] = label.strip()
  return {game: labels[game] for game in scores}


def write_reference_scores(path: str, scores: Mapping[str, Any],
                           one_means: Optional[Mapping[str, str]] = None) -> str:
  """Writes {game: ReferenceScores} as a reference-scores file (atomically).

  Entries are validated as `load_reference_scores` would (the error names
  `path`). `one_means`: {game: what its 1.0 point is}, for games where it is
  not the dataset average. Returns `path`.
  """
  path = os.fspath(path)
  checked = validate_reference_scores(scores, where=path)
  one_means = dict(one_means or {})
  unknown = sorted(set(one_means) - set(checked))
  if unknown:
    raise ValueError(f'{path}: one_means names games without reference scores: {unknown}')
  data = {game: dict({'random': row.random, 'dqn_replay': row.dqn_replay},
                     **({'one_means': one_means[game]} if game in one_means else {}))
          for game, row in sorted(checked.items())}
  files.atomic_write_text(path, json.dumps(data, indent=2) + '\n')
  return path


# ---------------------------------------------------------------- lookup
def _table(extra: ExtraScores) -> Mapping[str, ReferenceScores]:
  if not extra:
    return TABLE_3
  return dict(TABLE_3, **validate_reference_scores(extra, 'extra reference '
                                                   'scores'))


def normalization_game_name(game: str, extra: ExtraScores = None) -> str:
  """The Table 3 (or `extra`) spelling of `game` ('pong' -> 'Pong').

  Args:
    game: a game name, any case.
    extra: reference scores of games outside Table 3 (module docstring).

  Raises:
    ValueError: `game` is in neither Table 3 nor `extra` (the message lists
      the games), or `extra` is invalid (e.g. repeats a Table 3 game).
  """
  return _find(game, _table(extra))


def _find(game: str, table: Mapping[str, ReferenceScores]) -> str:
  """The spelling of `game` among `table`'s games (`normalization_game_name`)."""
  if isinstance(game, str):
    for name in table:
      if name.lower() == game.strip().lower():
        return name
  message = (f'No DQN-Replay reference scores for game {game!r}: Table 3 only '
             f'covers {", ".join(NORMALIZED_GAMES)}')
  others = [name for name in table if name not in TABLE_3]
  if others:
    message += f'; the extra reference scores cover {", ".join(others)}'
  raise ValueError(message + '.')


def reference_scores(game: str, extra: ExtraScores = None) -> ReferenceScores:
  """Random and DQN-Replay average returns of `game` (Table 3 or `extra`)."""
  table = _table(extra)
  return table[_find(game, table)]


def dqn_normalized_score(
    game: str, score: Union[float, Sequence[float], np.ndarray],
    extra: ExtraScores = None,
) -> Union[float, np.ndarray]:
  """DQN-Replay normalised score, on the fraction scale: random 0, DQN 1.0.

  Args:
    game: one of Table 3's games or of `extra`'s (any case).
    score: a raw episode return, or an array of them (any shape).
    extra: reference scores of games outside Table 3 (module docstring).

  Returns:
    `(score - random) / (dqn_replay - random)`: a float for a scalar score,
    else a float64 array of `score`'s shape.

  Raises:
    ValueError: `game` is in neither Table 3 nor `extra` (the message lists
      the games), or `extra` is invalid.
  """
  row = reference_scores(game, extra)
  normalized = ((np.asarray(score, dtype=np.float64) - row.random) /
                (row.dqn_replay - row.random))
  if normalized.ndim == 0:
    return float(normalized)
  return normalized


def dqn_normalized_scores(
    raw_scores: Mapping[str, Union[float, Sequence[float]]],
    extra: ExtraScores = None,
) -> dict:
  """`dqn_normalized_score` applied to every entry of a {game: score} dict."""
  return {game: dqn_normalized_score(game, s, extra)
          for game, s in raw_scores.items()}


# ------------------------------------------- D4RL (continuous control)
# D4RL (Fu et al., 2020) normalises a return R of a continuous-control task as
#
#   d4rl_normalized_score = 100 * (R - random) / (expert - random)
#
# on the PERCENT scale (random 0, expert 100), unlike the fraction scale of
# `dqn_normalized_score`. D4RL's own reference returns belong to its env
# versions; ours (gymnasium v5 MuJoCo, Gymnasium-Robotics PointMaze v3 and
# Fetch v4) are measured by our generators and stored in each Minari
# dataset's metadata as `ref_min_score` (random) and `ref_max_score`
# (expert / scripted), which is where these functions read them.


def d4rl_reference_scores(metadata: Mapping[str, Any],
                          where: Optional[str] = None) -> ReferenceScores:
  """(random, expert) returns from a dataset's metadata.

  Args:
    metadata: the metadata dict of `tf_offline_q.data.minari_data`'s loaders
      (or Minari's raw metadata): needs 'ref_min_score' and 'ref_max_score'.
    where: names the dataset in errors (default: its 'dataset_id').

  Returns:
    `ReferenceScores(random=ref_min_score, dqn_replay=ref_max_score)`; the
    second field holds the expert score here.

  Raises:
    ValueError: a missing, non-finite or equal pair, naming the dataset.
  """
  where = where or f"dataset {metadata.get('dataset_id', '?')!r}"
  missing = [k for k in ('ref_min_score', 'ref_max_score')
             if metadata.get(k) is None]
  if missing:
    raise ValueError(
        f'{where}: metadata has no {" or ".join(missing)}, so D4RL-normalised '
        'scores cannot be computed; regenerate the dataset with our generators '
        '(they measure random and expert returns) or pass the scores')
  return _as_reference_scores(
      {'random': metadata['ref_min_score'],
       'dqn_replay': metadata['ref_max_score']}, f'{where}: reference scores')


def d4rl_normalized_score(
    score: Union[float, Sequence[float], np.ndarray],
    ref_min_score: float, ref_max_score: float,
) -> Union[float, np.ndarray]:
  """100 * (score - ref_min_score) / (ref_max_score - ref_min_score).

  Args:
    score: a raw episode return, or an array of them (any shape).
    ref_min_score: the random policy's mean return (-> 0).
    ref_max_score: the expert's mean return (-> 100).

  Returns:
    A float for a scalar score, else a float64 array of `score`'s shape.
  """
  row = _as_reference_scores({'random': ref_min_score,
                              'dqn_replay': ref_max_score},
                             'D4RL reference scores')
  normalized = 100.0 * ((np.asarray(score, dtype=np.float64) - row.random) /
                        (row.dqn_replay - row.random))
  if normalized.ndim == 0:
    return float(normalized)
  return normalized


def d4rl_normalized_score_from_metadata(
    score: Union[float, Sequence[float], np.ndarray],
    metadata: Mapping[str, Any]) -> Union[float, np.ndarray]:
  """`d4rl_normalized_score` with the reference scores of a dataset's metadata."""
  row = d4rl_reference_scores(metadata)
  return d4rl_normalized_score(score, row.random, row.dqn_replay)


def d4rl_reference_scores_entry(metadata: Mapping[str, Any]) -> Dict[str, Any]:
  """A reference-scores file entry for the dataset's environment.

  {env_name: {"random": ref_min_score, "dqn_replay": ref_max_score,
  "scale": "d4rl"}}: with it in `launch/report.py --reference_scores=FILE`,
  the report's (fraction-scale) normalised scores of that environment are
  D4RL-normalised scores / 100. ("scale" is informational; readers ignore
  fields they do not know.)
  """
  env_name = metadata.get('env_name')
  if not env_name:
    raise ValueError(f"dataset {metadata.get('dataset_id', '?')!r}: metadata "
                     'has no env_name')
  row = d4rl_reference_scores(metadata)
  return {env_name: {'random': row.random, 'dqn_replay': row.dqn_replay,
                     'scale': 'd4rl'}}
