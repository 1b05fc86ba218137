r"""Plays a saved policy on Atari with the paper's evaluation protocol.

Loads a TF-Agents `PolicySaver` SavedModel, plays it on each game with sticky
actions (0.25), the full action set, DQN preprocessing, epsilon-greedy
(epsilon 0.001) for a budget of 125,000 agent steps per game (the episode in
progress at the end of the budget is finished, as in Dopamine), and writes the
per-episode returns as JSON (atomically; rewritten after every game):

  {"policy_dir": ..., "train_step": int | null,
   "protocol": {"num_steps": 125000, "epsilon": 0.001, ...},
   "results": {"Pong": {"returns": [...], "lengths": [...], "num_episodes": n,
                        "num_steps": n, "mean_return": x, "normalized": x}},
   "iqm_normalized": x}

`normalized` is the DQN-normalised mean return (random 0, DQN-Replay 1.0)
for Table 3 games, or the score normalised with `--reference_scores` (a
reference-scores JSON file, as `report.py`'s; e.g. MinAtar), else null;
`iqm_normalized` is the IQM across the evaluated games that have one (one run).
`train_step` is the step the SavedModel was exported at (`train_eval` writes
RUN/policies/greedy_policy with it); it is printed before playing.

Multi-game policies (Scaled Q-learning, `train_eval.games`): a policy whose
observations are `{'frames', 'game_id'}` and whose `export_info.json` lists
its "games" (the game of each id) plays each game through
`multi_game.GameIdEnvironment` (the frames tagged with that game's id) on the
full action set. `--games` defaults to all of the policy's games and may name
a subset; a game the policy was not trained on is refused. The report has the
same format, plus "policy_games" (the policy's games, in id order) and each
result's "game_id".

Flags are defined by `define_flags()` only when this file runs as a script, so
tests can import it and call `evaluate_saved_policy` directly.

Usage:
  python launch/evaluate.py --policy_dir=runs/pong_vit_0/policies/greedy_policy \
      --games=Pong,Breakout --output=runs/pong_vit_0/final_eval.json
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from tf_offline_q import console
from tf_offline_q.envs import atari
from tf_offline_q.envs import games as games_lib
from tf_offline_q.eval import evaluation
from tf_offline_q.eval import metrics
from tf_offline_q.eval import normalization
from tf_offline_q.networks import multi_head
from tf_offline_q.train import export
from tf_offline_q.train import multi_game

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (when run as a script, not on import)."""
  flags.DEFINE_string('policy_dir', None,
                      'A TF-Agents PolicySaver SavedModel directory.')
  flags.DEFINE_multi_string(
      'games', None,
      'Games to play (repeatable, or comma-separated): ALE names, or MinAtar-* '
      '(e.g. MinAtar-Breakout). Default: the paper\'s five; for a multi-game '
      'policy, all of its games.')
  flags.DEFINE_integer('num_steps', evaluation.EVAL_STEPS,
                       'Agent-step budget per game (the last episode is '
                       'finished).')
  flags.DEFINE_float('epsilon', evaluation.EVAL_EPSILON,
                     'Epsilon-greedy exploration on top of the policy.')
  flags.DEFINE_float('sticky_action_prob', 0.25,
                     'ALE repeat_action_probability.')
  flags.DEFINE_integer('seed', 0, 'Seed of the environments and exploration.')
  flags.DEFINE_string('output', None, 'JSON file to write the returns to.')
  flags.DEFINE_integer('max_episodes', None,
                       'Optionally stop a game after this many episodes.')
  flags.DEFINE_integer('max_episode_frames', 108_000,
                       'Raw-frame cap per episode (paper: 108000). Lower only '
                       'for smoke tests.')
  flags.DEFINE_bool('full_action_space', None,
                    'Use the full action set (18 ALE / 6 MinAtar actions); default: '
                    'per game, the full set if the policy has that many actions, '
                    'else the minimal set. Multi-game policies play the full set.')
  flags.DEFINE_string('reference_scores', None,
                      'JSON file of reference scores of games outside Table 3 (e.g. '
                      'MinAtar), as report.py\'s: their normalised scores and IQM.')



def parse_games(values):
  """Canonical game names from repeatable / comma-separated flag values."""
  games = []
  for value in values:
    for name in value.split(','):
      if name.strip():
        game = games_lib.canonical_game_name(name)
        if game not in games:
          games.append(game)
  if not games:
    raise ValueError('--games is empty')
  return games


def policy_games(policy_dir, policy):
  """The games of a multi-game policy, in game-id order (its `export_info.json`
  "games"), or None for a one-game policy (frames observations).

  Raises:
    ValueError: a multi-game observation without recorded games, or recorded
      games that do not match the policy's number of game ids.
  """
  observation = policy.time_step_spec.observation
  if not isinstance(observation, dict) or multi_head.GAME_ID not in observation:
    return None
  info = export.read_export_info(policy_dir) or {}
  games = info.get('games')
  if not games or not isinstance(games, list):
    raise ValueError(
        f'{policy_dir} is a multi-game policy ({{frames, game_id}} observations) but its '
        f'{export.INFO_FILE} lists no "games" (the game of each id): evaluate an export '
        'written by train_eval')
  spec = observation[multi_head.GAME_ID]
  maximum = getattr(spec, 'maximum', None)
  if maximum is not None and int(maximum) + 1 != len(games):
    raise ValueError(f'{policy_dir}: {export.INFO_FILE} lists {len(games)} games but the '
                     f'policy takes game ids 0..{int(maximum)}')
  return [games_lib.canonical_game_name(g) for g in games]


def evaluate_saved_policy(policy_dir, games, output, num_steps, epsilon,
                          sticky_action_prob, seed, max_episodes=None,
                          max_episode_frames=108_000, full_action_space=None,
                          reference_scores=None):
  """Evaluates the policy in `policy_dir` on `games`; writes and returns JSON.

  `full_action_space=None` decides per game: the full set if the policy has
  as many actions as the game's full set (18 ALE, 6 MinAtar), else the game's
  minimal set (Pong's minimal set also has 6 actions, so a count alone cannot
  decide across kinds of game). A multi-game policy (`policy_games`) plays
  every game on the full set, each through `multi_game.GameIdEnvironment`
  with the game's id; `games=None` then means all of its games.
  `reference_scores`: a reference-scores JSON file (or None: Table 3 only).
  """
  if not output:
    raise ValueError('--output is required')
  policy = evaluation.load_saved_policy(policy_dir)
  trained_on = policy_games(policy_dir, policy)
  if games is None:
    games = list(trained_on or atari.GAMES)
  if trained_on is not None:
    unknown = [g for g in games if g not in trained_on]
    if unknown:
      raise ValueError(f'The multi-game policy in {policy_dir} was not trained on '
                       f'{unknown}: its games are {trained_on}')
    if full_action_space is False:
      raise ValueError('A multi-game policy plays the full action set (its games share it); '
                       'do not pass --nofull_action_space')
  references = None
  if reference_scores:
    references = normalization.load_reference_scores(reference_scores)
  spec = policy.action_spec
  num_policy_actions = int(spec.maximum) - int(spec.minimum) + 1
  try:
    train_step = int(policy.get_train_step())
  except Exception:  # pylint: disable=broad-except
    train_step = None
  if train_step is not None and train_step < 0:
    train_step = None    # PolicySaver's -1: saved without a train step.
  print(f'Playing the policy in {policy_dir}: ' +
        (f'train step {train_step}' if train_step is not None
         else 'train step unknown (saved without one)'), flush=True)
  report = {
      'policy_dir': os.path.abspath(policy_dir),
      'train_step': train_step,
      'protocol': {
          'num_steps': num_steps, 'epsilon': epsilon,
          'sticky_action_prob': sticky_action_prob, 'seed': seed,
          'max_episodes': max_episodes,
          'max_episode_frames': max_episode_frames,
          'full_action_space': full_action_space,
          'finish_last_episode': True,
      },
      'results': {},
      'iqm_normalized': None,
  }
  if trained_on is not None:
    report['policy_games'] = trained_on
    print(f'A multi-game policy of {len(trained_on)} games; playing {games}', flush=True)
  for game in games:
    start = time.time()
    full = full_action_space
    if full is None:
      full = (trained_on is not None or
              num_policy_actions == games_lib.full_action_count(game))
    env = games_lib.make_env(
        game, sticky_action_prob=sticky_action_prob,
        full_action_space=full,
        max_episode_frames=max_episode_frames, seed=seed)
    if trained_on is not None:
      env = multi_game.GameIdEnvironment(env, trained_on.index(game), len(trained_on))
    try:
      result = evaluation.evaluate_policy(
          policy, env, num_steps=num_steps, epsilon=epsilon,
          max_episodes=max_episodes, seed=seed, progress=f'Evaluating {game}')
    finally:
      env.close()
    record = evaluation.make_eval_record(game, train_step or 0, result,
                                         reference_scores=references)
    report['results'][game] = {
        'returns': record['returns'],
        'lengths': record['lengths'],
        'num_episodes': result.num_episodes,
        'num_steps': result.num_steps,
        'mean_return': record['mean_return'],
        'normalized': record['normalized'],
        'full_action_space': full,
    }
    if trained_on is not None:
      report['results'][game]['game_id'] = trained_on.index(game)
    scores = [r['normalized'] for r in report['results'].values()
              if r['normalized'] is not None]
    if scores:
      report['iqm_normalized'] = metrics.iqm(np.asarray(scores)[None, :])
    evaluation.atomic_write_json(output, report)
    elapsed = time.time() - start
    logging.info('%s: %d episodes, %d steps in %.0fs (%.0f steps/s), mean '
                 'return %.2f', game, result.num_episodes, result.num_steps,
                 elapsed, result.num_steps / max(elapsed, 1e-9),
                 result.mean_return)
    normalized = record['normalized']
    print(f'{game}: mean return {result.mean_return:.2f} over '
          f'{result.num_episodes} episodes ({result.num_steps} steps)' +
          (f', {"DQN-normalised" if game in normalization.TABLE_3 else "normalised"} '
           f'{normalized:.3f}' if normalized is not None else ''), flush=True)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.quiet_third_party()
  if not FLAGS.policy_dir:
    raise app.UsageError('--policy_dir is required')
  if not FLAGS.output:
    raise app.UsageError('--output is required')
  try:
    games = parse_games(FLAGS.games) if FLAGS.games else None
    report = evaluate_saved_policy(
        FLAGS.policy_dir, games, FLAGS.output, num_steps=FLAGS.num_steps,
        epsilon=FLAGS.epsilon, sticky_action_prob=FLAGS.sticky_action_prob,
        seed=FLAGS.seed, max_episodes=FLAGS.max_episodes,
        max_episode_frames=FLAGS.max_episode_frames,
        full_action_space=FLAGS.full_action_space,
        reference_scores=FLAGS.reference_scores)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'evaluate.py: error: {e}')
  if report['iqm_normalized'] is not None:
    scored = [g for g, r in report['results'].items() if r['normalized'] is not None]
    kind = ('DQN-normalised' if all(g in normalization.TABLE_3 for g in scored)
            else 'normalised')
    print(f'IQM {kind} over {len(scored)} game(s): {report["iqm_normalized"]:.3f}')
  print(f'Wrote {FLAGS.output}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
