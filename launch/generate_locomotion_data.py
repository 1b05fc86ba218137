r"""Makes D4RL-style locomotion datasets (Minari format) from one online SAC run.

  python launch/generate_locomotion_data.py --env=Hopper-v5 --root=/data/minari \
      --kind=random,medium,medium-replay,expert

Datasets (written with `tf_offline_q.data.minari_data.write_minari_dataset`),
named like D4RL's under our namespace (`--namespace`, `--version`):

  {namespace}/{env}-random-v{version}          e.g. tf_offline_q/hopper-random-v0
  {namespace}/{env}-medium-v{version}               tf_offline_q/hopper-medium-v0
  {namespace}/{env}-medium-replay-v{version}        tf_offline_q/hopper-medium-replay-v0
  {namespace}/{env}-expert-v{version}               tf_offline_q/hopper-expert-v0

at ROOT/{namespace}/{env}-{kind}-v{version}/ ({env} is the lower-case name
without its version: hopper, walker2d, halfcheetah).

  random         `--num_steps` steps of uniform random actions in [-1, 1];
  medium-replay  every transition the SAC run played, in order, in episodes,
                 from its first step to the medium snapshot (the replay buffer
                 "stopped part-way", as D4RL's; it includes the uniform
                 initial-collection episodes);
  medium         `--num_steps` steps of the medium snapshot's policy;
  expert         `--num_steps` steps of the policy at the end of the run
                 (`--expert_steps` env steps).
Rollouts sample the SAC policy (`--rollout_policy=sample`, its tanh-Gaussian,
as D4RL's data was collected) or play its mean (`greedy`). A fixed-size
rollout cuts its last episode at the budget and marks it truncated.

The SAC run (`tf_offline_q.data.sac_online.SacRun`; TF-Agents `SacAgent`,
TF-Agents' SAC recipe, flags below) lives in `--run_dir` (default
ROOT/sac_runs/{Env}-seed{seed}) with its checkpoints, its transition log and
its learning curve (learning_curve.csv / .json: env step, train step, greedy
evaluation return, recent training return, wall time). It is resumable: kill
this script at any point and run the same command again; it continues from
the last checkpoint (taken at an episode end every `--checkpoint_interval`
env steps and at every evaluation). A finished run is reused, and a larger
`--expert_steps` continues it.

Reference scores (our own, for the gymnasium v5 environments; NOT D4RL's,
which were measured on mujoco-py v2/v3 environments), stored in every
dataset's Minari metadata and in RUN_DIR/references.json:
  ref_min_score  mean return of uniform random actions over `--ref_episodes`;
  ref_max_score  mean return of the final (expert) policy acting greedily
                 (its mean action) over `--ref_episodes`.
The D4RL-normalised score is 100 * (R - ref_min_score) / (ref_max_score -
ref_min_score).

"Medium", the D4RL way ("a policy trained to approximately 1/3 the
performance of the expert"): the first evaluation snapshot of the run whose
greedy evaluation return reaches ref_min + `--medium_fraction` * (ref_max -
ref_min), i.e. a normalised score of 100 * medium_fraction; or, with
`--medium_return`, the first that reaches that raw return.

`--train_only` trains (or resumes) the run and stops: to measure speed or
how many steps reach a given return (see the learning curve).
"""
import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_offline_q import console  # pylint: disable=g-import-not-at-top

KINDS = ('random', 'medium', 'medium-replay', 'expert')

flags.DEFINE_string('env', 'Hopper-v5', 'Locomotion environment: Hopper-v5, Walker2d-v5 or '
                    'HalfCheetah-v5.')
flags.DEFINE_string('root', None, 'Datasets root (Minari layout ROOT/NAMESPACE/NAME-vN).')
flags.DEFINE_list('kind', None, 'Datasets to write, comma-separated: random, medium, '
                  'medium-replay, expert, or all.')
flags.DEFINE_string('namespace', 'tf_offline_q', 'Minari namespace of the dataset ids.')
flags.DEFINE_integer('version', 0, 'Dataset version (the -vN of the ids).')
flags.DEFINE_string('run_dir', None, 'The SAC run (default ROOT/sac_runs/{env}-seed{seed}).')
flags.DEFINE_bool('train_only', False, 'Train (or resume) the SAC run and write no dataset.')
flags.DEFINE_bool('overwrite', False, 'Replace datasets that exist.')
flags.DEFINE_integer('seed', 0, 'Seed of the run, the rollouts and the references.')
flags.DEFINE_integer('max_episode_steps', None,
                     'Time limit of the environment (default: gymnasium\'s, 1000).')
# The SAC run.
flags.DEFINE_integer('expert_steps', 1_000_000, 'Env steps of the whole SAC run.')
flags.DEFINE_list('hidden', ['256', '256'], 'Hidden widths of the actor and critic MLPs.')
flags.DEFINE_integer('batch_size', 256, 'SAC batch size.')
flags.DEFINE_float('learning_rate', 3e-4, 'Adam learning rate (actor, critics, alpha).')
flags.DEFINE_float('gamma', 0.99, 'Discount.')
flags.DEFINE_float('tau', 0.005, 'Soft target update rate.')
flags.DEFINE_float('reward_scale', 0.1, 'Reward scale of the critic targets '
                   '(TF-Agents\' SAC example: 0.1).')
flags.DEFINE_integer('initial_collect_steps', 1000, 'Uniform random steps before training.')
flags.DEFINE_integer('replay_capacity', 1_000_000, 'Replay buffer capacity (transitions).')
flags.DEFINE_integer('eval_interval', 10_000, 'Env steps between evaluations / actor snapshots '
                     '(the granularity of the medium stop).')
flags.DEFINE_integer('eval_episodes', 5, 'Greedy episodes per evaluation.')
flags.DEFINE_integer('checkpoint_interval', 10_000, 'Env steps between checkpoints.')
flags.DEFINE_integer('log_interval', 5000, 'Env steps between progress lines.')
# The datasets.
flags.DEFINE_integer('num_steps', 1_000_000, 'Transitions of each random / medium / expert '
                     'dataset (D4RL: 1M).')
flags.DEFINE_float('medium_fraction', 1 / 3, 'Medium stop: the normalised return (fraction of '
                   'expert - random) the medium snapshot must reach.')
flags.DEFINE_float('medium_return', None, 'Medium stop as a raw return (overrides '
                   '--medium_fraction).')
flags.DEFINE_integer('ref_episodes', 10, 'Episodes measuring each reference score.')
flags.DEFINE_enum('rollout_policy', 'sample', ['sample', 'greedy'],
                  'How medium / expert rollouts act: sample the SAC policy or play its mean.')

def dataset_id(namespace: str, env_name: str, kind: str, version: int) -> str:
  """'tf_offline_q', 'Hopper-v5', 'medium-replay', 0 -> 'tf_offline_q/hopper-medium-replay-v0'."""
  short = env_name.split('-v')[0].lower()
  return f'{namespace}/{short}-{kind}-v{version}' if namespace else f'{short}-{kind}-v{version}'


def parse_kinds(kinds):
  if not kinds:
    raise app.UsageError(f'--kind is required: a comma-separated list of {", ".join(KINDS)} '
                         '(or all), or pass --train_only')
  if 'all' in kinds:
    return list(KINDS)
  unknown = [k for k in kinds if k not in KINDS]
  if unknown:
    raise app.UsageError(f'--kind: unknown {", ".join(map(repr, unknown))}; expected '
                         f'{", ".join(KINDS)} or all')
  return list(dict.fromkeys(kinds))


def check_flags(f):
  """Clear usage errors for bad flag values; returns the canonical env name."""
  if not f.root:
    raise app.UsageError('--root is required (the datasets root directory)')
  for name in ('expert_steps', 'num_steps', 'ref_episodes', 'eval_interval', 'eval_episodes',
               'checkpoint_interval', 'log_interval', 'batch_size', 'replay_capacity'):
    if getattr(f, name) < 1:
      raise app.UsageError(f'--{name} must be >= 1, got {getattr(f, name)}')
  if f.max_episode_steps is not None and f.max_episode_steps < 1:
    raise app.UsageError(f'--max_episode_steps must be >= 1, got {f.max_episode_steps}')
  if not 0.0 < f.medium_fraction < 1.0:
    raise app.UsageError(f'--medium_fraction must be in (0, 1), got {f.medium_fraction}')
  if f.version < 0:
    raise app.UsageError(f'--version must be >= 0, got {f.version}')
  try:
    hidden = tuple(int(h) for h in f.hidden)
  except ValueError as e:
    raise app.UsageError(f'--hidden must be comma-separated integers, got {f.hidden}') from e
  if not hidden or min(hidden) < 1:
    raise app.UsageError(f'--hidden must be positive widths, got {f.hidden}')
  from tf_offline_q.envs import continuous  # pylint: disable=g-import-not-at-top (TensorFlow)
  try:
    env_name = continuous.canonical_env_name(f.env)
  except ValueError as e:
    raise app.UsageError(f'--env: {e}') from e
  if env_name not in continuous.MUJOCO_ENVS:
    raise app.UsageError(f'--env={f.env}: not a locomotion environment; expected one of '
                         f'{", ".join(continuous.MUJOCO_ENVS)}')
  return env_name, hidden


def env_factory(env_name, max_episode_steps=None):
  from tf_offline_q.envs import continuous  # pylint: disable=g-import-not-at-top
  kwargs = {} if max_episode_steps is None else {'max_episode_steps': max_episode_steps}
  return lambda seed: continuous.make_continuous_env(env_name, seed=seed, **kwargs)


def make_episodes(kind, run, f, medium_step, seed):
  """The episodes of dataset `kind` and what produced them (metadata)."""
  from tf_offline_q.data import sac_online  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  if kind == 'medium-replay':
    episodes = list(run.log.episodes(run.state['num_segments'], stop_env_step=medium_step))
    return episodes, {'policy': 'SAC replay buffer', 'sac_env_steps': medium_step}
  offset = {'random': 1, 'medium': 2, 'expert': 3}[kind]
  env = run.make_env(seed * 100_003 + offset * 10_000_019)
  try:
    if kind == 'random':
      action_fn = sac_online.uniform_action_fn(env.action_spec(),
                                               np.random.default_rng([seed, 2, offset]))
      info = {'policy': 'uniform random actions'}
    else:
      step = medium_step if kind == 'medium' else run.env_step
      greedy = f.rollout_policy == 'greedy'
      action_fn = sac_online.policy_action_fn(sac_online.load_actor_policy(
          run.run_dir, step, run.time_step_spec, run.action_spec, greedy=greedy))
      info = {'policy': f'SAC actor after {step} env steps ({f.rollout_policy})',
              'sac_env_steps': step}
    episodes = sac_online.rollout(env, action_fn, num_steps=f.num_steps,
                                  log_interval=f.log_interval, label=kind)
  finally:
    env.close()
  return episodes, info


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.quiet_third_party()
  f = flags.FLAGS
  kinds = [] if f.train_only else parse_kinds(f.kind)
  env_name, hidden = check_flags(f)
  from tf_offline_q.data import minari_data  # pylint: disable=g-import-not-at-top

  ids = {k: dataset_id(f.namespace, env_name, k, f.version) for k in kinds}
  if not f.overwrite:
    existing = [i for i in ids.values()
                if os.path.exists(minari_data.dataset_path(f.root, i))]
    if existing:
      raise app.UsageError(f'Datasets exist: {", ".join(existing)} under {f.root}; pass '
                           '--overwrite to replace them')
  from tf_offline_q.data import sac_online  # pylint: disable=g-import-not-at-top (TensorFlow)
  run_dir = f.run_dir or os.path.join(f.root, 'sac_runs', f'{env_name}-seed{f.seed}')
  config = sac_online.SacConfig(
      hidden=hidden, batch_size=f.batch_size, learning_rate=f.learning_rate, gamma=f.gamma,
      tau=f.tau, reward_scale=f.reward_scale, initial_collect_steps=f.initial_collect_steps,
      replay_capacity=f.replay_capacity)
  start = time.time()
  try:
    run = sac_online.SacRun(run_dir, env_factory(env_name, f.max_episode_steps), env_name,
                            config, seed=f.seed, eval_interval=f.eval_interval,
                            eval_episodes=f.eval_episodes,
                            checkpoint_interval=f.checkpoint_interval,
                            log_interval=f.log_interval)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  try:
    state = run.train(f.expert_steps)
    print(f'SAC run {run_dir}: {state["env_step"]} env steps, {state["train_step"]} train '
          f'steps, {state["episodes"]} episodes; learning curve '
          f'{os.path.join(run_dir, sac_online.LEARNING_CURVE_CSV)}')
    if f.train_only:
      return
    refs = sac_online.measure_references(run, f.ref_episodes, f.seed)
    print(f'references ({f.ref_episodes} episodes): random {refs["ref_min_score"]:.1f}, '
          f'expert {refs["ref_max_score"]:.1f}')
    medium_step = None
    if {'medium', 'medium-replay'} & set(kinds):
      try:
        medium_step, threshold = sac_online.medium_snapshot(
            run.evals, refs, f.medium_fraction, f.medium_return)
      except ValueError as e:   # a fact about the run, not a usage error: no --help dump
        sys.exit(f'generate_locomotion_data.py: error: {e}')
      print(f'medium: the snapshot at env step {medium_step} (first greedy evaluation '
            f'return >= {threshold:.1f})')
    for kind in kinds:
      episodes, info = make_episodes(kind, run, f, medium_step, f.seed)
      returns = [e.episode_return for e in episodes]
      steps = sum(e.length for e in episodes)
      extra = dict(info, kind=kind, generator='launch/generate_locomotion_data.py',
                   sac_run_dir=os.path.relpath(run_dir, f.root),
                   sac_learning_curve=os.path.relpath(
                       os.path.join(run_dir, sac_online.LEARNING_CURVE_CSV), f.root),
                   sac_config=config.as_json(), seed=f.seed,
                   reference_scores_note=refs['note'], ref_episodes=f.ref_episodes,
                   medium_env_step=medium_step,
                   medium_fraction=None if f.medium_return is not None else f.medium_fraction,
                   medium_return=f.medium_return)
      path = minari_data.write_minari_dataset(
          f.root, ids[kind], episodes, env_name, refs['ref_min_score'], refs['ref_max_score'],
          algorithm_name=f'SAC (TF-Agents) {kind}',
          description=f'{ids[kind]}: D4RL-style {kind} data of {env_name}, '
                      f'{info["policy"]}; made by tf_offline_q',
          extra_metadata=extra, overwrite=f.overwrite)
      print(f'{ids[kind]}: {len(episodes)} episodes, {steps} steps, mean return '
            f'{sum(returns) / len(returns):.1f} -> {path}')
  finally:
    run.close()
  print(f'done in {time.time() - start:.0f}s')


if __name__ == '__main__':
  app.run(main)
