r"""Logged replay like DQN-Replay: an online agent learns a game; everything it played is written.

DQN-Replay (Agarwal et al., 2020) is the replay of an online DQN agent, logged
as it learned: mostly the play of weak early policies, then better ones. This
script makes the same kind of data here. For each game it trains the online
agent of `tf_offline_q.data.online_dqn` (TF-Agents DQN or C51, a small network,
Dopamine's decaying epsilon-greedy exploration, a replay memory and a target
network) for `--iterations` iterations of at least `--steps_per_iteration`
agent steps, and writes every transition it played, in order, one Dopamine
checkpoint per iteration:

  {root_dir}/{GAME}/{RUN}/replay_logs/$store$_{observation,action,reward,
      terminal}_ckpt.{N}.gz, add_count_ckpt.{N}.gz, invalid_range_ckpt.{N}.gz
  {root_dir}/{GAME}/{RUN}/learning_curve.{json,csv}   per-iteration returns
  {root_dir}/{GAME}/{RUN}/agent/iteration-{N}/        the agent after N iterations

The checkpoint files are those of `launch/generate_dqn_replay.py` (the same
`DopamineReplayWriter`), so `tf_offline_q.data.dqn_replay` (subsets `uniform`
and `first`), Reverb and `launch/train.py` read them unchanged, e.g.
`train_eval.data_source='dopamine:{root_dir}/MinAtar-Breakout/1/replay_logs'`.

Layout choices (and how they differ from the published files):
  * an iteration ends at the end of an episode (as Dopamine's runner), so
    every checkpoint holds whole episodes and no episode spans two;
  * checkpoint N holds exactly the transitions of iteration N (the buffer of
    each checkpoint is sized to them and never wraps); the published files are
    1M-transition circular buffers, written whenever one filled;
  * stored: the newest frame of the state the action was taken in, the
    action, the reward clipped to [-1, 1] (`--clip_rewards`, as Dopamine) and
    terminal at each episode's end, game over or frame cap alike.

The dataset directory is written through `tf_offline_q.data.replay_writer`:
`manifest.json` names this run and lists each committed checkpoint with its
files' sizes and CRC-32, and the readers read only listed checkpoints.

Resuming: after each iteration, checkpoint N is committed first (files
renamed into place, then the manifest), then the agent (network, target
network, optimizer, replay memory, acting RNG, step counters, learning curve,
the dataset's run id) is saved into `agent/iteration-{N+1}` (a directory
renamed into place when complete). A re-run with the same `--root_dir`
restores the newest agent, reopens the dataset as the same run (deleting what
an interrupted write left) and continues with the next iteration; if the kill
came between committing checkpoint N and saving the agent, iteration N is
played again and replaces checkpoint N. So no transition is lost or written
twice. The environment is re-seeded at every iteration from `--seed` and the
iteration number, so every checkpoint re-plays exactly in a fresh environment
(the tests check this). Settings that change what the agent or its data is
(agent, torso, action set, seed, ...) must match the saved ones
(`--overwrite` starts over); `--iterations` may grow.

Several games: `--game=MinAtar-Breakout,MinAtar-Asterix,...` plays them one
after the other in this process (each resumable). To use both cores, start
one process per game with the same `--root_dir`; games never share files.

Behaviour without learning: `--agent=heuristic` plays the same epsilon
schedule over a scripted policy (`tf_offline_q/envs/minatar_heuristics.py`)
instead of over the DQN's Q-values: weak (epsilon 1) early, then the script's
play. Only MinAtar Asterix and Freeway have one: measured here, the online
DQN plays both at random level after 50K steps, while the scripts score
about 4 (Asterix, random 0.5) and 21-27 (Freeway, random 0.1) per episode of
at most 2,500 frames. The learning curve then records that schedule.

Action set: the game's minimal set by default (as `train_eval`'s default);
`--full_action_space` for 18 ALE / 6 MinAtar actions (one action set shared by
all games, as multi-game training needs); train with the same setting.

Cost and learning, measured on MinAtar Breakout with the defaults (DQN,
'cells' torso, one update every 4 steps): about 1.8 ms of CPU per agent step
(0.16 environment, 0.84 acting, 3.3 per update), i.e. ~550 steps per CPU
second; the mean training return per 10K-step iteration went 0.32 (random
play, epsilon ~1), 0.44, 1.29, 2.36, 2.58, 2.95 over 60K steps (127 CPU
seconds). The 'small' 84x84 convnet costs ~6.9 ms of CPU per step (20.8 per
update).

Example:
  python launch/generate_logged_replay.py --root_dir=/tmp/logged_replay \
      --game=MinAtar-Breakout --iterations=20 --steps_per_iteration=25000
"""
import csv
import dataclasses
import io
import json
import os
import shutil
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_offline_q import console  # pylint: disable=g-import-not-at-top
from tf_offline_q import files  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import dqn_replay  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import replay_writer  # pylint: disable=g-import-not-at-top

flags.DEFINE_string('root_dir', None, 'Output root: {root_dir}/{GAME}/{RUN}/replay_logs.')
flags.DEFINE_list('game', ['MinAtar-Breakout'],
                  'Game(s), comma-separated, played one after the other: MinAtar-* or ALE names.')
flags.DEFINE_integer('run', 1, 'Run number (directory name).')
flags.DEFINE_integer('iterations', 10, 'Iterations (= checkpoints) per game.')
flags.DEFINE_integer('steps_per_iteration', 25_000,
                     'Agent steps per iteration at least (the last episode is finished).')
flags.DEFINE_enum('agent', 'dqn', ['dqn', 'c51', 'heuristic'],
                  "TF-Agents DqnAgent or CategoricalDqnAgent; or 'heuristic': the same "
                  'epsilon schedule over a scripted policy (MinAtar Asterix and Freeway, '
                  'tf_offline_q/envs/minatar_heuristics.py), no learning.')
flags.DEFINE_enum('torso', 'auto', ['auto', 'cells', 'small', 'nature'],
                  "Network torso; auto = 'cells' for MinAtar, 'small' for the ALE "
                  '(tf_offline_q/data/online_dqn.py).')
flags.DEFINE_float('learning_rate', 2.5e-4, 'Adam learning rate.')
flags.DEFINE_float('gamma', 0.99, 'Discount.')
flags.DEFINE_integer('batch_size', 32, 'Batch size of the online updates.')
flags.DEFINE_integer('update_period', 4, 'Agent steps per update.')
flags.DEFINE_integer('target_update_period', 250, 'Updates between target network copies.')
flags.DEFINE_integer('min_replay_history', 2000, 'Steps played before learning starts.')
flags.DEFINE_float('epsilon_train', 0.05, 'Final epsilon of the exploration schedule.')
flags.DEFINE_integer('epsilon_decay_steps', 25_000, 'Steps over which epsilon decays.')
flags.DEFINE_integer('replay_capacity', 100_000,
                     "The online agent's replay memory (steps). It keeps one frame per step: "
                     "100 bytes for MinAtar ('cells'), 7 KB for 84x84 frames (ALE: 100K steps "
                     'take 0.7 GB in memory and in each saved agent state).')
flags.DEFINE_bool('full_action_space', False,
                  'All 18 ALE / 6 MinAtar actions instead of the minimal set.')
flags.DEFINE_float('sticky_action_prob', 0.25, 'Sticky-action probability.')
flags.DEFINE_integer('max_episode_frames', 108_000, 'Frame cap per episode.')
flags.DEFINE_bool('clip_rewards', True, 'Store rewards clipped to [-1, 1], as DQN-Replay.')
flags.DEFINE_integer('compresslevel', 6, 'gzip level of the checkpoint files.')
flags.DEFINE_integer('seed', 0, 'Seed of the environment, network and exploration.')
flags.DEFINE_float('progress_secs', 15.0, 'Seconds between progress lines.')
flags.DEFINE_bool('overwrite', False,
                  "Start the game(s) over: delete the run's dataset, agent state and curve.")

STACK_SIZE = 4
GENERATOR = 'generate_logged_replay'
CURVE_FIELDS = ('iteration', 'env_steps', 'steps', 'episodes', 'mean_return', 'min_return',
                'max_return', 'epsilon', 'updates', 'mean_loss', 'seconds')
# Settings that define the agent and its data: a resumed run must keep them.
_FIXED_SETTINGS = ('agent_type', 'torso', 'full_action_space', 'sticky_action_prob',
                   'max_episode_frames', 'clip_rewards', 'seed', 'replay_capacity',
                   'steps_per_iteration')


class IterationLog:
  """The transitions of one iteration, in order, kept compactly until written.

  MinAtar frames are kept as their 10x10 cell grid (lossless) and redrawn at
  84x84 when written; ALE frames are kept as they are.
  """

  def __init__(self, game):
    from tf_offline_q.envs import minatar  # pylint: disable=g-import-not-at-top
    self._minatar = minatar if minatar.is_minatar_game(game) else None
    self.frames, self.actions, self.rewards, self.terminals = [], [], [], []

  def __call__(self, frame, action, reward, terminal):
    if self._minatar is not None:
      frame = self._minatar.read_cells(frame)
    self.frames.append(np.ascontiguousarray(frame))
    self.actions.append(action)
    self.rewards.append(reward)
    self.terminals.append(terminal)

  def frame(self, t: int) -> np.ndarray:
    """uint8 `[84, 84]` frame of step `t`."""
    if self._minatar is None:
      return self.frames[t]
    m = self._minatar
    out = np.zeros((m.FRAME_SIDE, m.FRAME_SIDE), np.uint8)
    out[m.BORDER:m.BORDER + m.GRID * m.CELL, m.BORDER:m.BORDER + m.GRID * m.CELL] = (
        self.frames[t].repeat(m.CELL, axis=0).repeat(m.CELL, axis=1))
    return out

  def buffer(self) -> dqn_replay.DopamineReplayWriter:
    """The iteration as one Dopamine buffer sized to it (it never wraps)."""
    episodes = sum(bool(t) for t in self.terminals)
    adds = len(self.actions) + (STACK_SIZE - 1) * episodes
    # One spare slot: add_count < capacity keeps the buffer un-wrapped for readers.
    buffer = dqn_replay.DopamineReplayWriter(adds + 1, STACK_SIZE, update_horizon=1)
    for t in range(len(self.actions)):
      buffer.add(self.frame(t), self.actions[t], self.rewards[t], self.terminals[t])
    return buffer


def write_curve(run_dir: str, game: str, run: int, settings: dict, curve: list):
  """`learning_curve.json` and `.csv` beside `replay_logs`, each written atomically."""
  files.atomic_write_text(os.path.join(run_dir, 'learning_curve.json'), json.dumps(
      {'game': game, 'run': run, 'settings': settings, 'iterations': curve}, indent=1) + '\n')
  out = io.StringIO()
  w = csv.DictWriter(out, fieldnames=CURVE_FIELDS, lineterminator='\n')
  w.writeheader()
  for row in curve:
    w.writerow({k: row.get(k) for k in CURVE_FIELDS})
  files.atomic_write_text(os.path.join(run_dir, 'learning_curve.csv'), out.getvalue())


def _fmt_secs(secs: float) -> str:
  if not np.isfinite(secs):
    return '?'
  secs = int(secs)
  return f'{secs // 3600}h{secs // 60 % 60:02d}m' if secs >= 3600 else f'{secs // 60}m{secs % 60:02d}s'


def generate_game(root_dir: str, game: str, run: int, iterations: int,
                  steps_per_iteration: int, config, full_action_space: bool = False,
                  sticky_action_prob: float = 0.25, max_episode_frames: int = 108_000,
                  clip_rewards: bool = True, compresslevel: int = 6, seed: int = 0,
                  progress_secs: float = 15.0, overwrite: bool = False) -> list:
  """Trains the online agent on `game` and writes its replay; resumes. Returns the curve."""
  from tf_offline_q.data import online_dqn  # pylint: disable=g-import-not-at-top
  from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
  game = dqn_replay.canonical_game(game)
  replay_dir = dqn_replay.dopamine_replay_dir(root_dir, game, run)
  run_dir = os.path.dirname(replay_dir)
  agent_dir = os.path.join(run_dir, 'agent')
  env = games.make_env(game, sticky_action_prob=sticky_action_prob,
                       full_action_space=full_action_space,
                       max_episode_frames=max_episode_frames, seed=seed)
  frame_shape = env.observation_spec().shape[:2]
  try:
    agent = online_dqn.make_agent(game, env, frame_shape, STACK_SIZE, config, seed)
  except ValueError as e:
    raise app.UsageError(f'--agent={config.agent_type}: {e}') from e
  memory = online_dqn.ReplayMemory(config.replay_capacity,
                                   online_dqn.encoded_frame_shape(frame_shape, config.torso),
                                   STACK_SIZE)
  settings = dict(dataclasses.asdict(config), full_action_space=full_action_space,
                  sticky_action_prob=sticky_action_prob, max_episode_frames=max_episode_frames,
                  clip_rewards=clip_rewards, seed=seed, steps_per_iteration=steps_per_iteration,
                  num_actions=env.num_actions)
  if overwrite:
    shutil.rmtree(agent_dir, ignore_errors=True)
    for name in ('learning_curve.json', 'learning_curve.csv'):
      if os.path.exists(os.path.join(run_dir, name)):
        os.remove(os.path.join(run_dir, name))

  def check_settings(state):
    changed = {k: (state['settings'].get(k), settings[k]) for k in _FIXED_SETTINGS
               if state['settings'].get(k) != settings[k]}
    if changed:
      raise app.UsageError(
          f'{agent_dir} was made with other settings ('
          + ', '.join(f'{k}: saved {a!r}, now {b!r}' for k, (a, b) in changed.items())
          + '); use the saved settings, another --root_dir/--run, or --overwrite')

  state = online_dqn.restore_state(agent_dir, agent, memory, check=check_settings)
  if state is None:
    start, curve, counters, rng = 0, [], online_dqn.Counters(), np.random.default_rng(seed)
    out = _create_dataset(replay_dir, dict(settings, game=game, run=run), overwrite)
  else:
    start, curve = int(state['iteration']), list(state['curve'])
    counters = online_dqn.Counters(**dict(state['counters'],
                                          recent_returns=tuple(state['counters']['recent_returns'])))
    rng = online_dqn.rng_from_state(state['rng'], seed)
    try:
      out = replay_writer.ReplayDirWriter.resume(replay_dir, run_id=state['run_id'])
    except dqn_replay.DataError as e:
      raise dqn_replay.DataError(
          f'{e}\n(the agent saved in {agent_dir} wrote run {state["run_id"]}; to start this game '
          'over pass --overwrite)') from e
    # Checkpoint `start` may be committed already: written, then killed before the agent was
    # saved. It is played again and replaced.
    if [c for c in out.checkpoints if c < start] != list(range(start)) or max(
        out.checkpoints, default=-1) > start:
      out.close()
      raise dqn_replay.DataError(
          f'{replay_dir} should hold checkpoints 0..{start - 1} (the agent in {agent_dir} '
          f'played {start} iterations) but holds {out.checkpoints}; pass --overwrite to start '
          'this game over')
    print(f'{game}: resuming after iteration {start} ({counters.env_steps} steps played)',
          flush=True)
  with out:
    if start >= iterations:
      print(f'{game}: all {iterations} iterations already written in {replay_dir}', flush=True)
    else:
      _play_iterations(game, run, env, agent, memory, rng, counters, curve, out, start,
                       iterations, steps_per_iteration, agent_dir, run_dir, settings,
                       clip_rewards, compresslevel, seed, progress_secs)
    out.finish()   # The manifest records that the run wrote all it meant to (so far).
  env.close()
  return curve


def _create_dataset(replay_dir: str, metadata: dict, overwrite: bool):
  """A new dataset; replaces one this generator left before saving any agent state."""
  manifest = dqn_replay.read_manifest(replay_dir) if os.path.isdir(replay_dir) else None
  abandoned = (manifest is not None and manifest['metadata'].get('generator') == GENERATOR
               and dqn_replay.manifest_checkpoints(manifest) in ([], [0]))
  if abandoned:
    print(f'{replay_dir}: replacing checkpoints {dqn_replay.manifest_checkpoints(manifest)} '
          'of a run killed before it saved its agent', flush=True)
  held = replay_writer.describe_dataset(replay_dir)
  if held is not None and not (overwrite or abandoned):
    raise app.UsageError(f'{replay_dir} already holds a dataset ({held}) but no agent state '
                         'of this generator; pass --overwrite to replace it, or use another '
                         '--root_dir or --run')
  return replay_writer.ReplayDirWriter.create(
      replay_dir, dict(metadata, generator=GENERATOR), overwrite=overwrite or abandoned)


def _play_iterations(game, run, env, agent, memory, rng, counters, curve, out, start,
                     iterations, steps_per_iteration, agent_dir, run_dir, settings,
                     clip_rewards, compresslevel, seed, progress_secs):
  """Iterations `start..iterations-1`: play, write checkpoint, save the agent, write the curve."""
  from tf_offline_q.data import online_dqn  # pylint: disable=g-import-not-at-top
  session_start, session_steps = time.time(), 0
  for iteration in range(start, iterations):
    env.seed(online_dqn.iteration_seed(seed, iteration))
    log = IterationLog(game)
    iteration_start = time.time()
    last_print = [iteration_start]

    def progress(steps, recent_return, epsilon, iteration=iteration, t0=iteration_start):
      now = time.time()
      if now - last_print[0] < progress_secs:
        return
      last_print[0] = now
      rate = (session_steps + steps) / max(now - session_start, 1e-9)
      left = (iterations - iteration) * steps_per_iteration - steps
      print(f'{game} run {run} | iteration {iteration + 1}/{iterations} | step '
            f'{steps}/{steps_per_iteration} | {steps / max(now - t0, 1e-9):.0f} steps/s | '
            f'return (last 20 episodes) {recent_return:.2f} | epsilon {epsilon:.3f} | '
            f'ETA {_fmt_secs(left / rate)}', flush=True)

    stats = online_dqn.play_iteration(env, agent, memory, rng, counters, steps_per_iteration,
                                      log, clip_rewards=clip_rewards, progress=progress)
    out.write_checkpoint(iteration, log.buffer(), compresslevel,
                         replace=iteration in out.checkpoints)
    seconds = time.time() - iteration_start
    session_steps += stats['steps']
    curve.append(dict(stats, iteration=iteration, env_steps=counters.env_steps,
                      seconds=round(seconds, 2)))
    online_dqn.save_state(agent_dir, iteration + 1, agent, memory, {
        'iteration': iteration + 1, 'run_id': out.run_id, 'settings': settings, 'curve': curve,
        'counters': dict(dataclasses.asdict(counters), recent_returns=list(counters.recent_returns)),
        'rng': rng.bit_generator.state})
    write_curve(run_dir, game, run, settings, curve)
    rate = session_steps / (time.time() - session_start)
    left = (iterations - iteration - 1) * steps_per_iteration
    print(f'{game} run {run} | iteration {iteration + 1}/{iterations} done | '
          f'{stats["steps"]} steps, {stats["episodes"]} episodes in {seconds:.0f}s '
          f'({stats["steps"] / seconds:.0f} steps/s) | mean return {stats["mean_return"]:.2f} | '
          f'epsilon {stats["epsilon"]:.3f} | checkpoint {iteration} | ETA {_fmt_secs(left / rate)}',
          flush=True)


def main(argv):
  del argv
  console.quiet_third_party()
  f = flags.FLAGS
  if not f.root_dir:
    raise app.UsageError('--root_dir is required')
  if f.iterations < 1 or f.steps_per_iteration < 1:
    raise app.UsageError('--iterations and --steps_per_iteration must be >= 1')
  from tf_offline_q.data import online_dqn  # pylint: disable=g-import-not-at-top
  try:
    games = [dqn_replay.canonical_game(g) for g in f.game]
  except ValueError as e:
    raise app.UsageError(f'--game: {e}') from e
  start = time.time()
  for game in games:
    torso = online_dqn.default_torso(game) if f.torso == 'auto' else f.torso
    config = online_dqn.AgentConfig(
        agent_type=f.agent, torso=torso, learning_rate=f.learning_rate, gamma=f.gamma,
        batch_size=f.batch_size, update_period=f.update_period,
        target_update_period=f.target_update_period, min_replay_history=f.min_replay_history,
        epsilon_train=f.epsilon_train, epsilon_decay_steps=f.epsilon_decay_steps,
        replay_capacity=f.replay_capacity)
    try:
      config.check()
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    curve = generate_game(f.root_dir, game, f.run, f.iterations, f.steps_per_iteration, config,
                          f.full_action_space, f.sticky_action_prob, f.max_episode_frames,
                          f.clip_rewards, f.compresslevel, f.seed, f.progress_secs,
                          f.overwrite)
    replay_dir = dqn_replay.dopamine_replay_dir(f.root_dir, game, f.run)
    returns = ' '.join(f'{row["mean_return"]:.2f}' for row in curve)
    print(f'{game}: {len(curve)} checkpoints in {replay_dir}; mean return per iteration: '
          f'{returns}', flush=True)
  print(f'Done in {time.time() - start:.0f}s', flush=True)


if __name__ == '__main__':
  app.run(main)
