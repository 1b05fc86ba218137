r"""Plays real ALE games and writes Dopamine DQN-Replay checkpoint files.

The files are laid out and encoded exactly like the published DQN-Replay
dataset, so the same reader (`tf_offline_q.data.dqn_replay`) is exercised:

  {root_dir}/{GAME}/{RUN}/replay_logs/$store$_{observation,action,reward,
      terminal}_ckpt.{N}.gz, add_count_ckpt.{N}.gz, invalid_range_ckpt.{N}.gz

Environment: `tf_offline_q.envs.games.make_env`. ALE games: `make_atari_env`
(frame skip 4 with max-pooling of the last two frames, 84x84 grey, sticky
actions 0.25, full or minimal action set, 108K-frame cap). `MinAtar-*` games:
`make_minatar_env` (the 10x10 grid drawn as an 84x84 grey frame, sticky
actions 0.25; pass --nofull_action_space for the minimal set). Each step stores the newest frame
(`observation[..., -1]`) of the state the action was taken in, the action,
the reward and whether the episode ended there. As the Dopamine runner that
logged the published data did, rewards are clipped to [-1, 1] before storing
(`--clip_rewards`) and the end of an episode is stored as terminal whether it
was a game over or the frame cap.

Behaviour policy (`--policy`):
  random          uniform over the action set;
  epsilon_greedy  a TF-Agents `PolicySaver` export (`--policy_dir`), with
                  probability `--epsilon` of a uniform action;
  mixture         per episode, `random` with probability
                  `--mixture_random_prob`, else `epsilon_greedy`.

A checkpoint is saved every `--checkpoint_every` steps into a circular buffer
of `--replay_capacity` (1M and 1M for the published layout; the defaults make
a few thousand steps of one game in about a minute).

The directory also gets a `manifest.json` naming this run and every file it
wrote (`tf_offline_q.data.replay_writer`), which the reader checks. A
directory that already holds a dataset is refused unless `--overwrite`, which
deletes the old dataset first (it is never mixed with the new one).

Example:
  python launch/generate_dqn_replay.py --root_dir=/tmp/dqn_replay \
      --game=Pong --num_steps=4000
"""
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_offline_q import cli  # pylint: disable=g-import-not-at-top
from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import progress as progress_lib  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import dqn_replay  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import replay_writer  # pylint: disable=g-import-not-at-top

flags.DEFINE_string('root_dir', None, 'Output root: {root_dir}/{GAME}/{RUN}/'
                    'replay_logs.')
flags.DEFINE_string('game', 'Pong', 'ALE game name, or MinAtar-{Breakout,...}.')
flags.DEFINE_integer('run', 1, 'Run number (directory name).')
flags.DEFINE_integer('num_steps', 4000, 'Agent steps to play and store.')
flags.DEFINE_integer('checkpoint_every', 2000,
                     'Steps between checkpoints (published data: 1M).')
flags.DEFINE_integer('replay_capacity', None,
                     'Circular buffer capacity (published: 1M); default '
                     '--checkpoint_every.')
flags.DEFINE_enum('policy', 'random', ['random', 'epsilon_greedy', 'mixture'],
                  'Behaviour policy.')
flags.DEFINE_string('policy_dir', None,
                    'TF-Agents PolicySaver export for epsilon_greedy/mixture.')
flags.DEFINE_float('epsilon', 0.01, 'Epsilon of epsilon_greedy.')
flags.DEFINE_float('mixture_random_prob', 0.5,
                   'Probability that a mixture episode is played at random.')
flags.DEFINE_float('sticky_action_prob', 0.25, 'ALE sticky-action probability.')
flags.DEFINE_bool('full_action_space', True, 'Use the 18 ALE actions (MinAtar: all 6).')
flags.DEFINE_integer('max_episode_frames', 108_000, 'Raw-frame cap per episode.')
flags.DEFINE_bool('clip_rewards', True,
                  'Store rewards clipped to [-1, 1], as the published data.')
flags.DEFINE_integer('stack_size', 4, 'Padding transitions + 1 per episode.')
flags.DEFINE_integer('update_horizon', 1, 'Horizon of invalid_range (DQN: 1).')
flags.DEFINE_integer('compresslevel', 6, 'gzip level of the files.')
flags.DEFINE_integer('seed', 0, 'Seed of the environment and the policy.')
flags.DEFINE_bool('overwrite', False,
                  'Replace a dataset already in the output directory (it is '
                  'deleted first); without it, such a directory is refused.')


class Behaviour:
  """Chooses actions: uniform, epsilon-greedy over a saved policy, or a mix."""

  def __init__(self, kind, num_actions, rng, policy_dir=None, epsilon=0.01,
               mixture_random_prob=0.5):
    self._kind = kind
    self._num_actions = num_actions
    self._rng = rng
    self._epsilon = epsilon
    self._mixture_random_prob = mixture_random_prob
    self._policy = None
    self._random_episode = kind == 'random'
    if kind != 'random':
      if not policy_dir:
        raise app.UsageError(f'--policy={kind} needs --policy_dir')
      if not os.path.isdir(policy_dir):
        raise app.UsageError(f'--policy_dir not found: {policy_dir}')
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      self._tf = tf
      self._policy = tf.saved_model.load(policy_dir)
      step = (int(self._policy.get_train_step().numpy())
              if hasattr(self._policy, 'get_train_step') else -1)
      print(f'Behaviour policy {policy_dir}: train step '
            f'{step if step >= 0 else "unknown"}', flush=True)

  def begin_episode(self):
    if self._kind == 'mixture':
      self._random_episode = self._rng.random() < self._mixture_random_prob

  def __call__(self, time_step) -> int:
    if self._random_episode or self._rng.random() < self._epsilon:
      return int(self._rng.integers(self._num_actions))
    tf = self._tf
    batched = time_step._replace(
        step_type=tf.constant([time_step.step_type], tf.int32),
        reward=tf.constant([time_step.reward], tf.float32),
        discount=tf.constant([time_step.discount], tf.float32),
        observation=tf.constant(time_step.observation[None]))
    action = int(self._policy.action(batched).action.numpy().reshape(-1)[0])
    if not 0 <= action < self._num_actions:
      raise ValueError(f'The saved policy chose action {action}, outside the '
                       f'environment\'s {self._num_actions} actions (check '
                       '--full_action_space)')
    return action


def generate(root_dir, game, run=1, num_steps=4000, checkpoint_every=2000,
             replay_capacity=None, policy='random', policy_dir=None,
             epsilon=0.01, mixture_random_prob=0.5, sticky_action_prob=0.25,
             full_action_space=True, max_episode_frames=108_000,
             clip_rewards=True, stack_size=4, update_horizon=1, compresslevel=6,
             seed=0, overwrite=False):
  """Plays and writes; returns (replay_dir, saved suffixes, episodes ended).

  Raises:
    DataError: the directory holds a dataset and not `overwrite`.
  """
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  if num_steps < 1 or checkpoint_every < 1:
    raise app.UsageError('--num_steps and --checkpoint_every must be >= 1')
  game = dqn_replay.canonical_game(game)
  replay_dir = dqn_replay.dopamine_replay_dir(root_dir, game, run)
  held = replay_writer.describe_dataset(replay_dir)
  if held is not None and not overwrite:  # Fail before playing, not after.
    raise dqn_replay.DataError(
        f'{replay_dir} already holds a dataset ({held}); pass --overwrite to '
        'replace it, or write elsewhere (--root_dir or --run)')
  env = games.make_env(
      game, sticky_action_prob=sticky_action_prob,
      full_action_space=full_action_space,
      max_episode_frames=max_episode_frames, seed=seed)
  rng = np.random.default_rng(seed)
  behaviour = Behaviour(policy, env.num_actions, rng, policy_dir, epsilon,
                        mixture_random_prob)
  buffer = dqn_replay.DopamineReplayWriter(
      replay_capacity or checkpoint_every, stack_size, update_horizon)
  metadata = dict(game=game, run=run, num_steps=num_steps,
                  checkpoint_every=checkpoint_every, policy=policy,
                  policy_dir=policy_dir, epsilon=epsilon,
                  mixture_random_prob=mixture_random_prob,
                  sticky_action_prob=sticky_action_prob,
                  full_action_space=full_action_space,
                  max_episode_frames=max_episode_frames,
                  clip_rewards=clip_rewards, seed=seed,
                  generator='launch/generate_dqn_replay.py')
  writer = replay_writer.ReplayDirWriter.create(replay_dir, metadata,
                                                overwrite=overwrite)
  try:
    suffixes, episodes = _play(env, behaviour, buffer, writer, game, run,
                               num_steps, checkpoint_every, clip_rewards,
                               compresslevel)
    writer.finish()
  finally:
    writer.close()
    env.close()
  return replay_dir, suffixes, episodes


def _play(env, behaviour, buffer, writer, game, run, num_steps,
          checkpoint_every, clip_rewards, compresslevel):
  suffixes = []
  episodes = 0
  time_step = env.reset()
  behaviour.begin_episode()
  progress = progress_lib.Progress(f'Generating {game} run {run}', total=num_steps)
  for step in range(1, num_steps + 1):
    progress.update(1)
    action = behaviour(time_step)
    next_step = env.step(np.int64(action))
    reward = float(next_step.reward)
    if clip_rewards:
      reward = float(np.clip(reward, -1.0, 1.0))
    ended = bool(next_step.is_last())
    buffer.add(time_step.observation[..., -1], action, reward, ended)
    if step % checkpoint_every == 0 or step == num_steps:
      writer.write_checkpoint(len(suffixes), buffer, compresslevel)
      suffixes.append(len(suffixes))
      print(f'{game} run {run}: checkpoint {suffixes[-1]} written at step {step:,} '
            f'({episodes} episodes so far)', flush=True)
    if ended:
      episodes += 1
      time_step = env.reset()
      behaviour.begin_episode()
    else:
      time_step = next_step
  progress.done(f', {episodes} finished episodes')
  return suffixes, episodes


def main(argv):
  del argv
  console.quiet_third_party()
  if not flags.FLAGS.root_dir:
    raise app.UsageError('--root_dir is required')
  f = flags.FLAGS
  start = time.time()
  with cli.user_errors('generate_dqn_replay.py'):
    replay_dir, suffixes, episodes = generate(
        f.root_dir, f.game, f.run, f.num_steps, f.checkpoint_every,
        f.replay_capacity, f.policy, f.policy_dir, f.epsilon,
        f.mixture_random_prob, f.sticky_action_prob, f.full_action_space,
        f.max_episode_frames, f.clip_rewards, f.stack_size, f.update_horizon,
        f.compresslevel, f.seed, f.overwrite)
  print(f'Wrote {f.num_steps} steps ({episodes} finished episodes) of '
        f'{f.game} as checkpoints {suffixes} in {replay_dir} '
        f'({time.time() - start:.1f}s)')


if __name__ == '__main__':
  app.run(main)
