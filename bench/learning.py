r"""Learning benchmark: a reduced version of the paper's CQL-vs-BC comparison.

Does learning happen, and does CQL beat behavioural cloning? In about 30
minutes on a 2-core CPU machine. The game is MinAtar Breakout by default
(`--game`; `tf_offline_q.envs.minatar` draws it as 84x84 frames, so the whole
ALE pipeline runs unchanged): on ALE Breakout the micro models did not learn
within this budget (README, "Learning").

  1. exports the game's scripted policy (`tf_offline_q.envs.scripted`) with
     `PolicySaver`;
  2. generates a deliberately suboptimal dataset with
     `launch/generate_dqn_replay.py --policy=mixture`: each episode is played at
     random with probability `--mixture_random_prob`, else by the scripted
     policy with `--behaviour_epsilon` random actions. Rewards are stored raw
     (`--noclip_rewards`; both agents clip or ignore them themselves) so the
     data's average episode return is the behaviour policy's game score;
  3. trains 4 methods x `--seeds` seeds with `launch/train.py` and the `micro`
     model (`local.gin`, with `--batch_size` 64 and `--learning_rate` 1e-3 for
     both agents): cql_vit (vit_none.gin), cql_vit_ts (vit_ts_none.gin),
     bc_vit (bc_vit.gin), bc_vit_ts (bc_vit_ts.gin), at most `--parallel`
     processes at a time; each is evaluated with the paper's protocol (sticky
     actions 0.25, epsilon 0.001) on a reduced budget (`--eval_steps` agent
     steps or `--eval_max_episodes` episodes), with a frame cap per episode so
     that a stalled agent (e.g. one that never presses FIRE on ALE Breakout)
     cannot eat the budget;
  4. runs `launch/report.py` (normalised IQM, 95% stratified bootstrap CIs).
     ALE games use Table 3. A MinAtar game has no Table 3 row, so its
     reference scores are measured here with Table 3's meaning (random policy
     = 0, average episode return of the offline dataset = 1.0), written to
     `{root_dir}/reference_scores.json` and passed with `--reference_scores`;
  5. prints the report's table, raw mean returns per method, and the reference
     returns (behaviour data, scripted policy, random policy; the random and
     scripted ones are measured here with the same sticky-action environment),
     and the total wall time.

  python bench/learning.py --root_dir=runs/learning [--seeds=3] [--train_steps=1200]
  python bench/learning.py --root_dir=runs/learning_ale --game=Breakout   # the ALE version

An existing dataset under --root_dir is reused; existing run directories are
resumed by train.py (delete --root_dir for a fresh benchmark).
"""
import collections
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import experiments  # pylint: disable=g-import-not-at-top

def define_flags(flag_values=flags.FLAGS):
  """Defines the flags (when run as a script, or on a test's own FlagValues)."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('root_dir', 'runs/learning', 'Where data, runs and the report go.', **fv)
  flags.DEFINE_string('game', 'MinAtar-Breakout',
                      'Game with a scripted policy: MinAtar-Breakout or Breakout (ALE).', **fv)
  flags.DEFINE_integer('seeds', 3, 'Seeds per method.', **fv)
  flags.DEFINE_list('methods', ['cql_vit', 'cql_vit_ts', 'bc_vit', 'bc_vit_ts'],
                    'Methods to train (subset of the four).', **fv)
  flags.DEFINE_integer('data_steps', 20000, 'Agent steps of generated data.', **fv)
  flags.DEFINE_float('mixture_random_prob', 0.5,
                     'Probability that a behaviour episode is played at random.', **fv)
  flags.DEFINE_float('behaviour_epsilon', 0.1,
                     'Random-action probability inside scripted episodes.', **fv)
  flags.DEFINE_enum('scripted_aim', 'follow', ['follow', 'bounce'],
                    'MinAtar-Breakout scripted policy while the ball rises: follow its column '
                    '(bounce_row=None; the simpler rule, which the micro models imitate within '
                    'the budget) or aim where it lands after bouncing off the bricks '
                    '(bounce_row=3; a ~5x stronger player that they do not).', **fv)
  flags.DEFINE_integer('train_steps', 1200, 'Gradient updates per run.', **fv)
  flags.DEFINE_integer('eval_interval', 400, 'Updates between evaluations.', **fv)
  flags.DEFINE_integer('eval_steps', 1500, 'Agent steps per evaluation (paper: 125K).', **fv)
  flags.DEFINE_integer('eval_max_episodes', 40, 'Stop an evaluation after this many episodes.',
                       **fv)
  flags.DEFINE_integer('max_episode_frames', 2000,
                       'Frame cap per episode (paper: 108K; MinAtar: frames = agent steps).', **fv)
  flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate of both agents (micro model).',
                     **fv)
  flags.DEFINE_integer('batch_size', 64, 'Batch size of both agents.', **fv)
  flags.DEFINE_integer('target_update_period', 100, 'CQL target-network update period.', **fv)
  flags.DEFINE_integer('parallel', 2, 'train.py processes at a time.', **fv)
  flags.DEFINE_integer('reference_episodes', 30,
                       'Episodes of the scripted policy measured for reference.', **fv)
  flags.DEFINE_integer('random_episodes', 300,
                       'Episodes of the random policy measured for reference (and, for a '
                       'game outside Table 3, for normalisation).', **fv)
  flags.DEFINE_integer('reps', 1000, 'Bootstrap resamples of the report.', **fv)


FLAGS = flags.FLAGS

GIN_FILES = {'cql_vit': 'vit_none.gin', 'cql_vit_ts': 'vit_ts_none.gin',
             'bc_vit': 'bc_vit.gin', 'bc_vit_ts': 'bc_vit_ts.gin'}


def train_command(root, replay_dir, game, method, seed, f=None):
  """(run directory, `launch/train.py` command) of one run; `f`: the flags (default FLAGS)."""
  f = f or FLAGS
  run_dir = os.path.join(root, 'runs', f'{method}_s{seed}')
  bindings = experiments.dopamine_run_bindings(
      game, replay_dir, method, seed, train_steps=f.train_steps, batch_size=f.batch_size,
      learning_rate=f.learning_rate, target_update_period=f.target_update_period,
      eval_interval=f.eval_interval, eval_steps=f.eval_steps,
      eval_max_episodes=f.eval_max_episodes, max_episode_frames=f.max_episode_frames,
      checkpoint_interval=f.train_steps)
  return run_dir, experiments.train_command(run_dir, [GIN_FILES[method], 'local.gin'], bindings)


def train_all(root, replay_dir, game):
  """Runs every (method, seed) with at most --parallel train.py processes (logs: RUN/train.log)."""
  jobs = []
  for seed in range(FLAGS.seeds):
    for method in FLAGS.methods:
      run_dir, command = train_command(root, replay_dir, game, method, seed)
      jobs.append((f'{method}_s{seed}', command, os.path.join(run_dir, 'train.log')))
  return experiments.run_scripts(jobs, parallel=FLAGS.parallel, echo=False)


def reference_returns(game, policy_dir, episodes, random_episodes, seed=12345):
  """Returns of random play and of the scripted policy, with the evaluation protocol.

  Both are played by `evaluation.evaluate_policy` (sticky actions 0.25,
  epsilon 0.001 on top of the policy, the same frame cap as the agents), for a
  number of whole episodes.
  """
  from tf_agents.policies import random_py_policy  # pylint: disable=g-import-not-at-top
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  from tf_offline_q.eval import evaluation  # pylint: disable=g-import-not-at-top
  env = games.make_env(game, sticky_action_prob=0.25, full_action_space=False,
                       max_episode_frames=FLAGS.max_episode_frames, seed=seed)
  random_policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec())
  results = {}
  for kind, policy, count in (('random', random_policy, random_episodes),
                              ('scripted', policy_dir, episodes)):
    result = evaluation.evaluate_policy(policy, env, num_steps=sys.maxsize, epsilon=0.001,
                                        max_episodes=count, seed=seed)
    results[kind] = list(result.returns)
  env.close()
  return results


def _fmt(returns):
  if not returns:
    return 'n/a'
  return f'{np.mean(returns):6.2f} (median {np.median(returns):.1f}, n={len(returns)} episodes)'


def main(argv):
  del argv
  console.quiet_third_party()
  start = time.time()
  root = os.path.abspath(FLAGS.root_dir)
  unknown = set(FLAGS.methods) - set(GIN_FILES)
  if unknown:
    raise app.UsageError(f'unknown methods {sorted(unknown)}; choose from {sorted(GIN_FILES)}')
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  from tf_offline_q.eval import normalization  # pylint: disable=g-import-not-at-top
  try:
    game = games.canonical_game_name(FLAGS.game)
  except ValueError as e:
    raise app.UsageError(f'--game: {e}') from e

  # 1-2. The scripted behaviour policy and the deliberately suboptimal dataset.
  replay_dir, policy_dir = experiments.scripted_mixture(
      root, game, FLAGS.data_steps, behaviour_epsilon=FLAGS.behaviour_epsilon,
      mixture_random_prob=FLAGS.mixture_random_prob,
      max_episode_frames=FLAGS.max_episode_frames, scripted_aim=FLAGS.scripted_aim,
      caller='learning')
  behaviour, data_steps = experiments.data_returns(replay_dir)
  print(f'Data: {data_steps} steps, {len(behaviour)} finished episodes, '
        f'mean return {np.mean(behaviour):.2f}', flush=True)

  # Reference returns of the random and scripted policies (paper protocol).
  ref_start = time.time()
  references = reference_returns(game, policy_dir, FLAGS.reference_episodes,
                                 FLAGS.random_episodes)
  print(f'Reference returns measured in {time.time() - ref_start:.0f}s: random '
        f'{np.mean(references["random"]):.2f}, scripted {np.mean(references["scripted"]):.2f}',
        flush=True)
  # Normalisation: Table 3 for its games; otherwise measured here, with Table
  # 3's meaning (random 0, average return of the offline dataset 1.0).
  extra, report_flags = None, []
  if game not in normalization.TABLE_3:
    extra = {game: normalization.ReferenceScores(
        random=float(np.mean(references['random'])), dqn_replay=float(np.mean(behaviour)))}
    scores_path = os.path.join(root, 'reference_scores.json')
    normalization.write_reference_scores(scores_path, extra)
    report_flags.append(f'--reference_scores={scores_path}')
    print(f'Reference scores (random 0, dataset average 1.0) written to {scores_path}',
          flush=True)

  # 3. Training.
  train_start = time.time()
  failed = train_all(root, replay_dir, game)
  print(f'\nTraining finished in {(time.time() - train_start) / 60:.1f} min'
        + (f'; FAILED runs: {failed}' if failed else ''), flush=True)

  # 4. Report.
  report_dir = os.path.join(root, 'report')
  experiments.run_script('launch/report.py', f'--runs={os.path.join(root, "runs", "*")}',
      f'--output_dir={report_dir}', f'--reps={FLAGS.reps}', *report_flags, caller='learning')

  # 5. Print.
  with open(os.path.join(report_dir, 'report.md')) as f:
    print('\n' + f.read())
  print(f'Raw {game} returns at the final evaluation (mean over seeds of each '
        'run\'s mean episode return; seeds listed):')
  for method in FLAGS.methods:
    finals = []
    for seed in range(FLAGS.seeds):
      records = experiments.eval_records(os.path.join(root, 'runs', f'{method}_s{seed}'))
      if records:
        finals.append(records[-1]['mean_return'])
    curve = collections.defaultdict(list)
    for seed in range(FLAGS.seeds):
      for record in experiments.eval_records(os.path.join(root, 'runs', f'{method}_s{seed}')):
        curve[record['step']].append(record['mean_return'])
    curve_text = ', '.join(f'{step}: {np.mean(v):.2f}' for step, v in sorted(curve.items()))
    print(f'  {method:11s} {np.mean(finals) if finals else float("nan"):6.2f}  '
          f'seeds {[round(x, 2) for x in finals]}  curve {{{curve_text}}}')
  norm = lambda r: normalization.dqn_normalized_score(game, float(np.mean(r)), extra=extra)
  print('\nReference returns (same sticky-action environment; normalised in brackets):')
  print(f'  behaviour data (mixture, random-episode prob {FLAGS.mixture_random_prob}, '
        f'epsilon {FLAGS.behaviour_epsilon}): {_fmt(behaviour)}  [{norm(behaviour):.3f}]')
  print(f'  scripted policy (epsilon 0.001):  {_fmt(references["scripted"])}  '
        f'[{norm(references["scripted"]):.3f}]')
  print(f'  random policy:                    {_fmt(references["random"])}  '
        f'[{norm(references["random"]):.3f}]')
  print(f'\nTotal wall time: {(time.time() - start) / 60:.1f} min')
  print(f'  report: {os.path.join(report_dir, "report.md")}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
