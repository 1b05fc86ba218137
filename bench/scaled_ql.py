r"""Scaled Q-learning at CPU scale: multi-game pre-training, offline fine-tuning to a new game.

The experiment of the talk ("offline fine-tuning to new games", "DR3 / feature
normalisation"), on MinAtar's five games drawn as 84x84 Atari frames, with
the `micro` ResNet (gin/scaled_ql_resnet34.gin + gin/scaled_ql_local.gin):

  1. data: for each game, `launch/generate_logged_replay.py --full_action_space`
     logs everything an online DQN agent played while it learned (DQN-Replay's
     kind of data: mostly weak early play, then better). The online DQN learns
     Breakout, Seaquest and SpaceInvaders in 30K steps but not Asterix or
     Freeway (after 50K steps: Asterix 0.5 per episode, random play 0.48;
     Freeway 0, no crossing ever seen), so the games of `--data_heuristic_games`
     are logged with `--agent=heuristic` instead: the same epsilon schedule
     (1 -> 0.05) over a scripted policy (`envs/minatar_heuristics.py`).
     The shared full action set (6 MinAtar actions) is what multi-game
     training needs. Data and evaluation share one frame cap
     (`--max_episode_frames`, 2,500 = Freeway's own episode length), so the
     data's average return and the evaluation returns are comparable;
  2. reference scores per game (for normalised scores and the IQM across
     games): random play (the evaluation protocol, `--random_episodes`) = 0,
     the average episode return of the logged data = 1.0, written to
     `{root_dir}/reference_scores.json` (rewards are stored clipped to
     [-1, 1], as DQN-Replay; MinAtar's rewards are 0 or 1 per step anyway);
  3. pre-training: one multi-game CQL + C51 network on the 4 games of
     `--pretrain_games` (uniform batches over games), with and without
     feature normalisation, `--seeds` seeds each;
  4. fine-tuning on the held-out game (`--held_out_game`) with
     `--fraction` of its data (`train_eval.fraction`, uniform episodes):
     from the pre-trained run of the same seed and normalisation
     (`train_eval.init_checkpoint`: torso restored, a fresh head) vs from
     scratch (same network, data, budget and seed);
  5. `launch/report.py` (normalised IQM, 95% stratified bootstrap CIs) over
     the fine-tuning runs (`{root_dir}/report_finetune`) and the pre-training
     runs (`{root_dir}/report_pretrain`); prints both tables.

Everything is resumable: a re-run reuses finished data (the generator
resumes itself), skips finished runs (a record of every game at the last
step) and resumes the others from their checkpoints.

  python bench/scaled_ql.py --root_dir=runs/scaled_ql           # about 30 min
  python bench/scaled_ql.py --root_dir=/tmp/scaled_ql_smoke --smoke   # minutes

Sizing. Measured here (niced, while other jobs kept the 2 cores at a load of
3-5): one CQL + C51 train step of the micro ResNet (4-game heads, 6 actions,
feature normalisation) at batch 32 took 109 ms in a `tf.function` loop, and
one greedy policy step 4.5 ms (a throwaway script timing 20 steps and 100
actions after tracing). The logged-replay generator runs ~550 agent steps per CPU
second (its docstring). Assuming the two processes of `--parallel=2` together
reach only that one-process rate (9 steps/s; no gain from running two):

  data        5 games x 30,000 steps / 550 per s / 2 processes      ~  2.5 min
  pretrain    2 norms x 3 seeds x 2,000 steps = 12,000 steps / 9 /s ~ 22 min
  finetune    2 norms x 2 inits x 3 seeds x 750 = 9,000 steps / 9 /s ~ 17 min
  startup     18 runs x ~40 s (TF import, Reverb fill, 2 tracings;
              estimated, not measured idle) / 2                        ~  6 min
  evaluation  6 x 4 games + 12 x 1 game = 36 evaluations x ~1,500-2,500
              agent steps (an evaluation finishes its last episode;
              Freeway's is 2,500) x 4.5 ms (+ ~10 s tracing) / 2       ~  7 min
  report      bootstrap (2,000 resamples)                              ~  1 min
                                                              total  ~ 56 min

Measured (2026-11-30, with another study's data generation beside it at nice
15): the whole default run took 29.7 min, data 3.7 min, pre-training 12.6 min
(6 runs, ~4 min each, 2 at a time), each fine-tuning run ~100 s. The
model above overestimates because the two processes did run ~2x faster than one.

The `--smoke` run (every step, 1 seed, tiny budgets) took 40.8 min of wall
time with the machine at a load of 8-12 (other experiments running), almost
all of it process start-up and tracing (each process got ~10% of a core);
on an idle machine we expect a few minutes (not measured).
"""
import json
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

flags.DEFINE_string('root_dir', 'runs/scaled_ql', 'Where data, runs and reports go.')
flags.DEFINE_list('pretrain_games', ['MinAtar-Breakout', 'MinAtar-Asterix', 'MinAtar-Freeway',
                                     'MinAtar-Seaquest'], 'Games of the pre-training runs.')
flags.DEFINE_string('held_out_game', 'MinAtar-SpaceInvaders',
                    'The new game of the fine-tuning runs (not pre-trained on).')
flags.DEFINE_integer('seeds', 3, 'Seeds of every configuration.')
flags.DEFINE_integer('data_iterations', 6, 'Logged-replay iterations (checkpoints) per game.')
flags.DEFINE_integer('data_steps_per_iteration', 5000, 'Agent steps per logged-replay iteration.')
flags.DEFINE_list('data_heuristic_games', ['MinAtar-Asterix', 'MinAtar-Freeway'],
                  'Games logged with --agent=heuristic (a scripted policy under the same '
                  'epsilon schedule) instead of the online DQN, which does not learn them '
                  'within the data budget.')
flags.DEFINE_integer('data_epsilon_decay_steps', 10_000,
                     "Steps over which the online agent's epsilon decays to 0.05.")
flags.DEFINE_integer('pretrain_steps', 2000, 'Updates of each pre-training run.')
flags.DEFINE_integer('finetune_steps', 750, 'Updates of each fine-tuning / scratch run.')
flags.DEFINE_float('fraction', 0.1, "Fraction of the held-out game's episodes for fine-tuning.")
flags.DEFINE_integer('batch_size', 32, 'Batch size (pre-training: uniform over its games).')
flags.DEFINE_integer('eval_steps', 1500, 'Evaluation budget per game (agent steps).')
flags.DEFINE_integer('eval_max_episodes', 10, 'At most this many evaluation episodes per game.')
flags.DEFINE_integer('max_episode_frames', 2500,
                     'Frame (= step) cap of an episode, in the data and in evaluation.')
flags.DEFINE_integer('random_episodes', 100, 'Random-policy episodes per game (reference 0).')
flags.DEFINE_list('norms', ['fn', 'nofn'],
                  'Configurations: fn (feature normalisation), nofn (without), or both.')
flags.DEFINE_integer('parallel', 2, 'Processes at a time (data generation and training).')
flags.DEFINE_integer('reps', 2000, 'Bootstrap resamples of the report.')
flags.DEFINE_bool('smoke', False, 'A few-minute run of every step: 2 pre-training games, 1 seed, '
                  'tiny data and budgets (checks the pipeline, not the science).')
FLAGS = flags.FLAGS

NORMS = (('fn', True), ('nofn', False))


def _smoke_overrides():
  if FLAGS.smoke:
    FLAGS.pretrain_games = FLAGS.pretrain_games[:2]
    FLAGS.seeds = 1
    FLAGS.data_iterations = 2
    FLAGS.data_steps_per_iteration = 300
    FLAGS.pretrain_steps = 20
    FLAGS.finetune_steps = 10
    FLAGS.fraction = 0.5
    FLAGS.eval_steps = 50
    FLAGS.eval_max_episodes = 2
    FLAGS.max_episode_frames = 50
    FLAGS.random_episodes = 5
    FLAGS.reps = 100


def data_dir(root):
  return os.path.join(root, 'data')


def replay_dir(root, game):
  return os.path.join(data_dir(root), game, '1', 'replay_logs')


def generate_data(root, all_games):
  """Logged replay of an online DQN per game (one process per game)."""
  jobs = [(f'data {game}', [
      'launch/generate_logged_replay.py', f'--root_dir={data_dir(root)}', f'--game={game}',
      '--full_action_space', f'--iterations={FLAGS.data_iterations}',
      f'--steps_per_iteration={FLAGS.data_steps_per_iteration}', '--seed=0',
      f'--epsilon_decay_steps={FLAGS.data_epsilon_decay_steps}', '--min_replay_history=1000',
      f'--max_episode_frames={FLAGS.max_episode_frames}',
      *(['--agent=heuristic'] if game in FLAGS.data_heuristic_games else [])],
           os.path.join(data_dir(root), f'{game}.log')) for game in all_games]
  failed = experiments.run_scripts(jobs, parallel=FLAGS.parallel, echo=False)
  if failed:
    sys.exit(f'scaled_ql.py: data generation failed: {failed} (logs in {data_dir(root)})')


def reference_scores(root, all_games):
  """{game: {'random', 'dqn_replay'}}: random play = 0, the data's average episode return = 1."""
  from tf_agents.policies import random_py_policy  # pylint: disable=g-import-not-at-top
  from tf_offline_q.data import dqn_replay  # pylint: disable=g-import-not-at-top
  from tf_offline_q.envs import games as games_lib  # pylint: disable=g-import-not-at-top
  from tf_offline_q.eval import evaluation  # pylint: disable=g-import-not-at-top
  from tf_offline_q.eval import normalization  # pylint: disable=g-import-not-at-top
  path = os.path.join(root, 'reference_scores.json')
  if os.path.exists(path):
    return path, {g: r._asdict() for g, r in normalization.load_reference_scores(path).items()}
  scores = {}
  for game in all_games:
    returns = [float(e.reward.sum()) for e in dqn_replay.iterate_episodes(
        replay_dir(root, game), fraction=1.0) if e.terminal]
    env = games_lib.make_env(game, sticky_action_prob=0.25, full_action_space=True,
                             max_episode_frames=FLAGS.max_episode_frames, seed=777)
    policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec())
    random = evaluation.evaluate_policy(policy, env, num_steps=sys.maxsize, epsilon=0.0,
                                        max_episodes=FLAGS.random_episodes, seed=777)
    env.close()
    scores[game] = {'random': float(np.mean(random.returns)),
                    'dqn_replay': float(np.mean(returns))}
    if scores[game]['dqn_replay'] <= scores[game]['random']:
      print(f'warning: {game}: the logged data averages {scores[game]["dqn_replay"]:.2f} per '
            f'episode, not above random play ({scores[game]["random"]:.2f}); its normalised '
            'scores are not meaningful (more data iterations?)', flush=True)
    print(f'Reference {game}: random {scores[game]["random"]:.2f}, data average '
          f'{scores[game]["dqn_replay"]:.2f} over {len(returns)} episodes', flush=True)
  normalization.write_reference_scores(path, scores)
  return path, scores


def _finished(run_dir, games, step):
  """True when the run has an evaluation of every game at `step`."""
  path = os.path.join(run_dir, 'eval', 'returns.jsonl')
  if not os.path.exists(path):
    return False
  with open(path) as f:
    done = {(r['game'], r['step']) for r in map(json.loads, filter(str.strip, f))}
  return all((g, step) in done for g in games)


def train_command(root, run_dir, method, games, steps, norm, seed, references, extra=()):
  source = f'dopamine:{data_dir(root)}/{{game}}/1/replay_logs'
  return [
      'launch/train.py', f'--root_dir={run_dir}', '--gin_file=scaled_ql_resnet34.gin',
      *(['--gin_file=scaled_ql_no_feature_norm.gin'] if not norm else []),
      '--gin_file=scaled_ql_local.gin',
      f'--gin_bindings=GAMES={list(games)}',
      f"--gin_bindings=train_eval.data_source='{source}'",
      f"--gin_bindings=train_eval.reference_scores='{references}'",
      f"--gin_bindings=train_eval.method='{method}'",
      f'--gin_bindings=train_eval.seed={seed}',
      f'--gin_bindings=train_eval.num_train_steps={steps}',
      f'--gin_bindings=train_eval.batch_size={FLAGS.batch_size}',
      f'--gin_bindings=train_eval.eval_interval={steps}',
      f'--gin_bindings=train_eval.eval_steps={FLAGS.eval_steps}',
      f'--gin_bindings=train_eval.eval_max_episodes={FLAGS.eval_max_episodes}',
      f'--gin_bindings=train_eval.max_episode_frames={FLAGS.max_episode_frames}',
      f'--gin_bindings=train_eval.checkpoint_interval={max(steps // 2, 1)}',
      '--gin_bindings=train_eval.policy_save_interval=0',
      *extra]


def run_jobs(jobs, what):
  todo = [(name, command, log) for name, command, log, done in jobs if not done]
  print(f'{what}: {len(jobs) - len(todo)} of {len(jobs)} runs already finished; running '
        f'{len(todo)} ({FLAGS.parallel} at a time, logs in RUN/train.log)', flush=True)
  start = time.time()
  failed = experiments.run_scripts(todo, parallel=FLAGS.parallel, echo=False)
  if failed:
    sys.exit(f'scaled_ql.py: {what} failed: {failed} (see their train.log)')
  print(f'{what} done in {(time.time() - start) / 60:.1f} min', flush=True)


def report(run_dirs, output_dir, references):
  sys.path.insert(0, os.path.join(REPO, 'launch'))
  import report as report_lib  # pylint: disable=g-import-not-at-top
  summary = report_lib.build_report(run_dirs, output_dir, reps=FLAGS.reps,
                                    reference_scores=references)
  for method, s in summary['methods'].items():
    iqm = s['aggregates']['IQM']
    games = ', '.join(f'{g} {v["normalized_mean"]:.2f} ({v["return_mean"]:.2f})'
                      for g, v in s['per_game'].items())
    print(f'  {method:16s} IQM {iqm["point"]:6.3f} [{iqm["lower"]:6.3f}, {iqm["upper"]:6.3f}] '
          f'{len(s["games"])} games x {s["num_runs_per_game"]} runs at step {s["final_step"]}; '
          f'per game normalised (raw): {games}', flush=True)
  print(f'  -> {os.path.join(output_dir, "report.md")}', flush=True)
  return summary


def main(argv):
  del argv
  console.quiet_third_party()
  _smoke_overrides()
  root = os.path.abspath(FLAGS.root_dir)
  held_out = FLAGS.held_out_game
  if held_out in FLAGS.pretrain_games:
    sys.exit(f'scaled_ql.py: --held_out_game {held_out} is one of --pretrain_games')
  all_games = list(FLAGS.pretrain_games) + [held_out]
  norms = [(tag, norm) for tag, norm in NORMS if tag in FLAGS.norms]
  if not norms or set(FLAGS.norms) - {tag for tag, _ in NORMS}:
    sys.exit(f'scaled_ql.py: --norms {FLAGS.norms}: choose from fn, nofn')
  stray = sorted(set(FLAGS.data_heuristic_games) - set(all_games))
  if stray:
    sys.exit(f'scaled_ql.py: --data_heuristic_games {stray} are not games of this run '
             f'({all_games})')
  start = time.time()
  print(f'Scaled QL at CPU scale in {root}: pre-train on {FLAGS.pretrain_games}, fine-tune on '
        f'{held_out} ({FLAGS.fraction:.0%} of its data), {FLAGS.seeds} seed(s)', flush=True)
  generate_data(root, all_games)
  print(f'Data ready ({(time.time() - start) / 60:.1f} min)', flush=True)
  references, _ = reference_scores(root, all_games)

  runs = os.path.join(root, 'runs')
  pretrain = []
  for tag, norm in norms:
    for seed in range(FLAGS.seeds):
      run_dir = os.path.join(runs, f'pretrain_{tag}_s{seed}')
      pretrain.append((f'pretrain_{tag}_s{seed}', train_command(
          root, run_dir, f'pretrain_{tag}', FLAGS.pretrain_games, FLAGS.pretrain_steps, norm,
          seed, references), os.path.join(run_dir, 'train.log'),
                       _finished(run_dir, FLAGS.pretrain_games, FLAGS.pretrain_steps)))
  run_jobs(pretrain, 'Pre-training')

  finetune = []
  for tag, norm in norms:
    for seed in range(FLAGS.seeds):
      for init in ('finetune', 'scratch'):
        run_dir = os.path.join(runs, f'{init}_{tag}_s{seed}')
        extra = [f'--gin_bindings=train_eval.fraction={FLAGS.fraction}']
        if init == 'finetune':
          extra.append("--gin_bindings=train_eval.init_checkpoint="
                       f"'{os.path.join(runs, f'pretrain_{tag}_s{seed}')}'")
        finetune.append((f'{init}_{tag}_s{seed}', train_command(
            root, run_dir, f'{init}_{tag}', [held_out], FLAGS.finetune_steps, norm, seed,
            references, extra), os.path.join(run_dir, 'train.log'),
                         _finished(run_dir, [held_out], FLAGS.finetune_steps)))
  run_jobs(finetune, f'Fine-tuning on {held_out}')

  print(f'\nFine-tuning on {held_out} ({FLAGS.fraction:.0%} of its data, '
        f'{FLAGS.finetune_steps} updates): normalised score (random 0, data average 1)',
        flush=True)
  report([os.path.join(runs, name) for name, *_ in finetune],
         os.path.join(root, 'report_finetune'), references)
  print(f'\nPre-training on {len(FLAGS.pretrain_games)} games ({FLAGS.pretrain_steps} updates)',
        flush=True)
  report([os.path.join(runs, name) for name, *_ in pretrain],
         os.path.join(root, 'report_pretrain'), references)
  print(f'\nTotal wall time {(time.time() - start) / 60:.1f} min', flush=True)


if __name__ == '__main__':
  app.run(main)
