"""Multi-game runs of `train_eval` (Scaled Q-learning): games, specs, environments, evaluation.

`train_eval.games = ['MinAtar-Breakout', 'MinAtar-Asterix', ...]` trains one
network on every game of the list (`train_eval.game` is then unused). Game
`games[i]` has id `i`: its Reverb table, its head of the multi-headed network
(`networks/multi_head.py`), its evaluation environment and its evaluation
records. The whole run shares:

  * one action set, the full one: 18 ALE actions or MinAtar's 6
    (`games.full_action_count`), so every head is `[actions, atoms]` and an
    action index means the same key in every game. A run mixing ALE and
    MinAtar games, or `full_action_space=False`, is refused (the games'
    minimal sets differ). Data recorded with the minimal set (DQN-Replay's
    ALE games) has its actions mapped to the full set while loading
    (`data/action_sets.py`); MinAtar data must be recorded with the full set
    (`generate_logged_replay.py --full_action_space`, which it records);
  * the observation `{'frames': uint8 [84, 84, 4], 'game_id': int32 []}`: the
    replay batches carry it (`data/game_mixture.py`), and each evaluation
    environment adds its game's id to the frames (`GameIdEnvironment`), so the
    same policy, in memory or saved, plays every game in a `PyDriver`.

Data: `train_eval.data_source` holds `{game}`, replaced by each game's name
(e.g. 'dopamine:/data/logged/{game}/1/replay_logs', the layout of
`launch/generate_logged_replay.py`); the subset options (`fraction`,
`subset_mode`, `data_seed`) apply to every game.

Evaluation: every game with the single-game protocol (sticky actions,
epsilon, step budget); one `returns.jsonl` record per game and step, and in
TensorBoard the per-game returns and scores plus the IQM of the normalised
scores across the games (`evaluation.write_eval_summaries`; MinAtar games are
normalised with `train_eval.reference_scores`). `run.json` lists the games;
`launch/report.py` reads a multi-game run as one run per game.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tf_agents.environments import wrappers
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec

from tf_offline_q.envs import games as games_lib
from tf_offline_q.envs import minatar
from tf_offline_q.eval import evaluation
from tf_offline_q.networks import multi_head

GAME_PLACEHOLDER = '{game}'


def check_games(games: Sequence[str], full_action_space: bool) -> List[str]:
  """The canonical names of a multi-game run's games, checked.

  Raises:
    ValueError: naming `train_eval.games` for an unknown or repeated game, a
      continuous-control environment, a mix of ALE and MinAtar games, or
      `full_action_space=False` (the games must share one action set).
  """
  names = []
  for game in games:
    if not isinstance(game, str) or not game:
      raise ValueError(f'train_eval.games must be a list of game names, got {list(games)}')
    try:
      name = games_lib.canonical_game_name(game)
    except ValueError as e:
      raise ValueError(f'train_eval.games: {e}') from e
    names.append(name)
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f'train_eval.games repeats {repeated}: list each game once')
  from tf_offline_q.envs import continuous  # pylint: disable=g-import-not-at-top
  if any(continuous.is_continuous_env(n) for n in names):
    raise ValueError(f'train_eval.games holds continuous-control environments '
                     f'{[n for n in names if continuous.is_continuous_env(n)]}: multi-game '
                     'training is for the Atari-style games (ALE or MinAtar)')
  kinds = {minatar.is_minatar_game(n) for n in names}
  if len(kinds) > 1:
    raise ValueError(f'train_eval.games mixes MinAtar and ALE games ({names}): their full '
                     'action sets differ (6 vs 18); train them in separate runs')
  if not full_action_space:
    raise ValueError('train_eval.games needs train_eval.full_action_space = True: the games '
                     'share one action set, the full one (18 ALE, 6 MinAtar actions); '
                     'minimal-set data (DQN-Replay) is mapped to it (data/action_sets.py)')
  return names


def num_actions(games: Sequence[str]) -> int:
  """Size of the action set the games share (their full set)."""
  return games_lib.full_action_count(games[0])


def game_data_source(data_source: Optional[str], game: str, num_games: int) -> Optional[str]:
  """`data_source` for one game: `{game}` replaced by its name.

  Raises:
    ValueError: several games and no `{game}` in `data_source`.
  """
  if not data_source:
    return data_source
  if GAME_PLACEHOLDER not in data_source:
    if num_games > 1:
      raise ValueError(
          f'train_eval.data_source {data_source!r} has no {GAME_PLACEHOLDER} placeholder: '
          f'with several games it must name each game\'s data, e.g. '
          f'"dopamine:/data/logged/{GAME_PLACEHOLDER}/1/replay_logs"')
    return data_source
  return data_source.replace(GAME_PLACEHOLDER, game)


class GameIdEnvironment(wrappers.PyEnvironmentBaseWrapper):
  """A game's environment whose observations carry its game id:
  `{'frames': the wrapped observation, 'game_id': int32 game_id}`.

  The spec is `multi_head.observation_spec(num_games)` as array specs, so a
  multi-game policy (in memory or a SavedModel) plays it in a `PyDriver`.
  """

  def __init__(self, env, game_id: int, num_games: int):
    super().__init__(env)
    if not 0 <= game_id < num_games:
      raise ValueError(f'game_id must be in [0, {num_games}), got {game_id}')
    self._game_id = np.int32(game_id)
    frames = env.observation_spec()
    self._observation_spec = {
        multi_head.FRAMES: frames,
        multi_head.GAME_ID: array_spec.BoundedArraySpec(
            (), np.int32, 0, num_games - 1, name=multi_head.GAME_ID)}

  @property
  def game_id(self) -> int:
    return int(self._game_id)

  def observation_spec(self):
    return self._observation_spec

  def time_step_spec(self):
    spec = self._env.time_step_spec()
    return spec._replace(observation=self._observation_spec)

  def _tag(self, time_step):
    return time_step._replace(observation={multi_head.FRAMES: time_step.observation,
                                           multi_head.GAME_ID: self._game_id})

  def _reset(self):
    return self._tag(self._env.reset())

  def _step(self, action):
    return self._tag(self._env.step(action))


def make_eval_envs(games: Sequence[str], sticky_action_prob: float,
                   max_episode_frames: Optional[int], seed: int) -> List[GameIdEnvironment]:
  """One `GameIdEnvironment` per game, full action set, the evaluation protocol."""
  return [GameIdEnvironment(
      games_lib.make_env(game, sticky_action_prob=sticky_action_prob, full_action_space=True,
                         max_episode_frames=max_episode_frames, seed=seed + 1000 * i),
      i, len(games)) for i, game in enumerate(games)]


def specs(eval_envs: Sequence[GameIdEnvironment]):
  """`(time_step_spec, action_spec)` tensor specs of the multi-game run."""
  return (tensor_spec.from_spec(eval_envs[0].time_step_spec()),
          tensor_spec.from_spec(eval_envs[0].action_spec()))


def evaluate(policy, games: Sequence[str], eval_envs: Sequence[GameIdEnvironment], step: int,
             num_steps: int, epsilon: float, max_episodes: Optional[int], seed: int,
             reference_scores=None) -> Tuple[List[Dict], Dict[str, evaluation.EvalResult]]:
  """Plays every game with the single-game protocol.

  Returns:
    (one `returns.jsonl` record per game, {game: EvalResult}).
  """
  records, results = [], {}
  for game, env in zip(games, eval_envs):
    result = evaluation.evaluate_policy(policy, env, num_steps=num_steps, epsilon=epsilon,
                                        max_episodes=max_episodes, seed=seed,
                                        progress=f'Evaluating {game} at step {step}')
    results[game] = result
    records.append(evaluation.make_eval_record(game, step, result, reference_scores=reference_scores))
  return records, results


def iqm_line(records: Sequence[Dict]) -> str:
  """', IQM across G games X' of the records' normalised scores ('' if any is null)."""
  scores = [r['normalized'] for r in records]
  if not scores or any(s is None for s in scores):
    return ''
  from tf_offline_q.eval import metrics  # pylint: disable=g-import-not-at-top
  return f', IQM across {len(scores)} games {metrics.iqm(np.asarray(scores)[None, :]):.3f}'
