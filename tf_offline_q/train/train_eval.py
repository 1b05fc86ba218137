"""The experiment loop of the paper: offline training from Reverb, periodic ALE evaluation.

`train_eval` is configured with gin (`gin/common.gin` holds Table 2, one file
per Table 1 row picks the backbone, `gin/local.gin` shrinks any of them).

  data      a Dopamine replay directory or a TFDS dataset, a `fraction` subset,
            loaded once into an in-process Reverb server (checkpointed, so a
            restarted run does not reload it), or external Reverb servers.
  learner   TF-Agents `Learner` under the run's strategy: checkpoints (agent,
            optimizer, step), train summaries; after a checkpoint, every
            `policy_save_interval` steps and at the end, the greedy and
            collect policies are exported as SavedModels (`export.py`).
  eval      every `eval_interval` steps: `eval_steps` agent steps of ALE with
            sticky actions, epsilon 0.001, returns to `eval/returns.jsonl` and
            TensorBoard (return, DQN-normalised score, IQM across games).

Multi-game runs (Scaled Q-learning): `train_eval.games = [...]` trains one
multi-headed network on several games (one Reverb table each, mixed batches,
every game evaluated; `multi_game.py`, `data/game_mixture.py`), and
`train_eval.init_checkpoint = PRETRAINED_RUN_DIR` starts a run from a
pre-trained network (`fine_tune.py`).

Run layout (`root_dir`): `train/` (checkpoints, TensorBoard), `policies/`
(greedy_policy, collect_policy: SavedModels of the latest exported step, see
`export.py`), `eval/` (returns.jsonl and TensorBoard), `reverb/` (table
checkpoint), `run.json`, `run_config.json` (the settings that shape the run),
`run.lock` (while a process owns the directory), `operative_config.gin` (and
`operative_config.resume-STEP.gin` per resume). `run_dir.py` describes the
lock, the settings that may change on resume and the checkpoint recovery.
"""
import os
import time
from typing import Optional, Sequence

from absl import logging
import gin
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.train import learner as learner_lib
from tf_agents.utils import common

from tf_offline_q import progress as progress_lib
from tf_offline_q.agents import bc
from tf_offline_q.agents import cql_c51
from tf_offline_q.data import action_sets
from tf_offline_q.data import game_mixture
from tf_offline_q.data import reverb_stream
from tf_offline_q.envs import games as games_lib
from tf_offline_q.eval import evaluation
from tf_offline_q.eval import normalization
from tf_offline_q.networks import q_network
from tf_offline_q.train import arguments
from tf_offline_q.train import continuous
from tf_offline_q.train import export
from tf_offline_q.train import fine_tune
from tf_offline_q.train import multi_game
from tf_offline_q.train import run_dir as run_dir_lib
from tf_offline_q.train import strategy as strategy_lib

AGENTS = ('cql', 'bc')


def agent_class(agent_type: str):
  if agent_type == 'cql':
    return cql_c51.CqlC51Agent
  if agent_type == 'bc':
    return bc.BehavioralCloningAgent
  if agent_type in continuous.CONTINUOUS_AGENTS:  # DT, QtAgent, QTransformer(Bc)Agent
    return continuous.configured_classes(agent_type)[0][0]
  raise ValueError(f'Unknown agent_type {agent_type!r}; expected one of '
                   f'{AGENTS + continuous.CONTINUOUS_AGENTS}')


# Arguments `make_agent` passes to the agents itself (the rest come from gin).
_AGENT_ARGS_SET_HERE = ('time_step_spec', 'action_spec', 'categorical_q_network',
                        'cloning_network', 'n_step', 'train_step_counter')


def make_agent(agent_type: str, time_step_spec, action_spec, backbone: str, variant: str,
               aggregation: str, feature_normalization: bool, n_step: int,
               train_step_counter: Optional[tf.Variable] = None):
  """Builds the network and agent (call under `strategy.scope()`); the agents'
  own hyperparameters (Table 2) come from gin."""
  kwargs = dict(backbone=backbone, variant=variant, aggregation=aggregation,
                feature_normalization=feature_normalization)
  if agent_type == 'cql':
    network = q_network.C51QNetwork(time_step_spec.observation, action_spec, **kwargs)
    return cql_c51.CqlC51Agent(time_step_spec, action_spec, network, n_step=n_step,
                               train_step_counter=train_step_counter)
  if agent_type == 'bc':
    network = q_network.ActionLogitsNetwork(time_step_spec.observation, action_spec, **kwargs)
    return bc.BehavioralCloningAgent(time_step_spec, action_spec, network,
                                     train_step_counter=train_step_counter)
  raise ValueError(f'Unknown agent_type {agent_type!r}; expected one of {AGENTS}')


def _checked_actions(episodes, num_actions: int, data_source: str):
  """Passes episodes through, failing clearly on actions outside the action set."""
  for episode in episodes:
    outside = (episode.action < 0) | (episode.action >= num_actions)
    if outside.any():
      raise ValueError(
          f'{data_source} holds action {int(episode.action[outside][0])}, outside the {num_actions} '
          'actions of the evaluation environment; set train_eval.full_action_space to match '
          'the action set the data was recorded with')
    yield episode


def _fill_replay(server, game, data_source, fraction, subset_mode, data_seed, num_actions,
                 full_action_space=False, data_action_set=None):
  if server.is_filled(game):
    logging.info('Reverb table %s restored from its checkpoint; source not reloaded.', game)
    return
  if not data_source:
    raise ValueError('train_eval.data_source is not set: give "dopamine:REPLAY_DIR" or '
                     '"tfds:DATA_DIR:NAME" (or reverb_addresses of filled servers)')
  source = reverb_stream.parse_source(data_source)
  # Minimal-set data (DQN-Replay) played on the full set: actions mapped (action_sets.py).
  action_map = action_sets.action_map(game, source, full_action_space, data_action_set)
  if action_map is not None:
    print(f'{game}: minimal-set actions mapped to the full set {action_map.full_indices}',
          flush=True)
  episodes = reverb_stream.iterate_source(source, fraction, subset_mode, data_seed,
                                         action_map=action_map)
  filling = progress_lib.Progress(f'Loading {data_source} into Reverb', unit='steps')

  def counted(source):
    for episode in source:
      filling.update(len(episode.action))
      yield episode

  stats = server.fill(game, counted(_checked_actions(episodes, num_actions, data_source)))
  filling.done(f', {stats.items} items')
  logging.info('Loaded %d steps (%d items) from %s into Reverb at %.0f steps/s', stats.steps,
               stats.items, data_source, stats.steps_per_second)
  server.checkpoint()


class ProgressLogger:
  """Progress line: step, steps/s, losses and ETA; also writes the loss summaries."""

  def __init__(self, total_steps: int, start_step: int, summary_writer):
    self._total = total_steps
    self._last_step = start_step
    self._last_time = time.perf_counter()
    self._writer = summary_writer

  def restart_clock(self):
    """Excludes time spent elsewhere (evaluation) from the next rate."""
    self._last_time = time.perf_counter()

  def __call__(self, step: int, loss_info) -> str:
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    values = {'loss': float(loss_info.loss)}
    values.update({k: float(v) for k, v in loss_info.extra._asdict().items()})
    with self._writer.as_default(step=step):
      tf.summary.scalar('Metrics/steps_per_sec', rate)
      for name, value in values.items():
        tf.summary.scalar(f'Losses/{name}', value)
    eta = (self._total - step) / rate if rate > 0 else float('inf')
    losses = ' '.join(f'{k}={v:.4g}' for k, v in values.items())
    line = f'step {step}/{self._total}  {rate:.2f} steps/s  {losses}  ETA {eta / 60:.1f} min'
    print(line, flush=True)
    return line


def _trim_eval_records(run_dir: str, step: int):
  """Drops evaluation records newer than the restored step (a run killed
  after an evaluation but before its next checkpoint evaluates again)."""
  path = evaluation.returns_path(run_dir)
  if not os.path.exists(path):
    return
  records = evaluation.read_eval_records(run_dir)
  kept = [r for r in records if r['step'] <= step]
  if len(kept) != len(records):
    evaluation.write_eval_records(run_dir, kept)


@gin.configurable(denylist=['root_dir', 'strategy'])
def train_eval(root_dir: str,
               strategy: Optional[tf.distribute.Strategy] = None,
               game: str = 'Pong',
               games: Sequence[str] = (),
               game_weights: Sequence[float] = (),
               init_checkpoint: Optional[str] = None,
               reference_scores: Optional[str] = None,
               agent_type: str = 'cql',
               backbone: str = 'vit_ts',
               variant: str = 'S/14',
               aggregation: str = 'none',
               feature_normalization: bool = False,
               data_source: Optional[str] = None,
               reverb_addresses: Sequence[str] = (),
               reverb_timeout_seconds: float = 300.0,
               fraction: float = 0.05,
               subset_mode: str = 'uniform',
               data_seed: int = 0,
               full_action_space: bool = False,
               data_action_set: Optional[str] = None,
               n_step: int = 3,
               batch_size: int = 32,
               num_train_steps: int = 1_000_000,
               steps_per_run: int = 100,
               eval_interval: int = 62_500,
               eval_steps: int = 125_000,
               eval_max_episodes: Optional[int] = None,
               eval_epsilon: float = 0.001,
               sticky_action_prob: float = 0.25,
               max_episode_frames: int = 108_000,
               checkpoint_interval: int = 5_000,
               policy_save_interval: int = 62_500,
               summary_interval: int = 100,
               jit_compile: bool = False,
               seed: int = 0,
               method: Optional[str] = None):
  """Trains an agent offline and evaluates it on ALE; resumes from `root_dir`.

  Args:
    root_dir: run directory (see module docstring).
    strategy: tf.distribute strategy (default: the current one).
    game: ALE game; its Reverb table and evaluation environment.
    games: several ALE or MinAtar games (then `game` is unused): one
      multi-headed network trained on all of them, game `games[i]` with id i
      (`multi_game.py`); needs full_action_space=True and a data_source with
      a `{game}` placeholder.
    game_weights: proportions of the games in every batch, one weight per
      game (empty: uniform); see `data/game_mixture.py`.
    init_checkpoint: a pre-trained run directory (or one of its checkpoints)
      whose torso, and the heads of the games it shares with this run,
      initialise this run's network (`fine_tune.py`); ignored on resume.
    reference_scores: JSON file of reference scores of games outside Table 3
      (e.g. MinAtar; `normalization.load_reference_scores`): evaluation
      records and TensorBoard then hold their normalised scores and IQM.
    agent_type: 'cql' (CqlC51Agent) or 'bc' (BehavioralCloningAgent); or, on
      continuous control (`continuous.py`), 'dt' (DecisionTransformerAgent),
      'sequence_bc' (its backbone without return tokens), 'qt' (QtAgent,
      agents/qt.py: the DT with critics), 'q_transformer'
      (QTransformerAgent, agents/q_transformer.py; its n_step and gamma are
      QTransformerAgent's, not train_eval's) or 'q_transformer_bc'
      (QTransformerBcAgent, agents/q_transformer_bc.py: behaviour cloning on
      Q-Transformer's network, windows of one step): then data_source is
      'minari:ROOT:DATASET_ID' or 'd4rl:PATH', `game` defaults to the
      dataset's environment (a continuous env name given is checked against
      it; the run is reported under the dataset's id), evaluations play
      eval_max_episodes (default 10) whole greedy episodes and report
      D4RL-normalised scores and success rates (Fetch: the score is the
      success rate), and backbone / variant / aggregation / n_step /
      fraction / the Atari evaluation protocol are unused.
    backbone, variant, aggregation, feature_normalization: the network.
    data_source: 'dopamine:REPLAY_DIR' or 'tfds:DATA_DIR:NAME'.
    reverb_addresses: external Reverb servers holding filled tables; if set,
      no in-process server is started and `data_source` is unused.
    reverb_timeout_seconds: how long an external Reverb server may not answer
      (at the start, and while training: the learner says what it waits for,
      then ends with an error naming the server).
    fraction, subset_mode, data_seed: the dataset subset (paper: 5% uniform).
    full_action_space: 18 ALE actions instead of the game's minimal set
      (must match the data; DQN-Replay was recorded with minimal sets).
      With True, data recorded with the minimal set (DQN-Replay) has its
      actions mapped to the full set (`data/action_sets.py`); multi-game runs
      always play the full set.
    data_action_set: the set the data's actions index, 'minimal' or 'full';
      None: what the data records (our generators' manifests), else
      DQN-Replay's minimal set for ALE games (`action_sets.data_action_set`).
    n_step: n-step return of the agent and the Reverb item layout.
    batch_size: global batch size (Table 2: 32).
    num_train_steps: total gradient updates.
    steps_per_run: updates per `Learner.run` call (one progress line each).
    eval_interval: updates between evaluations (paper: 62,500); 0 = never.
    eval_steps, eval_max_episodes: evaluation budget (paper: 125K steps).
    eval_epsilon, sticky_action_prob, max_episode_frames: evaluation protocol.
    checkpoint_interval, policy_save_interval, summary_interval: in updates.
      The policies are exported (`export.py`) when the step reaches a
      multiple of policy_save_interval and at the end; with 0, only at the
      end and only if `policies/` already holds an export (kept current).
    jit_compile: compile the train step with XLA.
    seed: TF / numpy seed of the run.
    method: name of the run's method in reports (default derived).
  Returns:
    The list of evaluation records written by this call.
  Raises:
    ValueError (arguments.ConfigError, run_dir.RunDirError): a wrongly typed
      or out-of-range argument, a run directory in use by another process,
      settings that differ from the run's recorded ones, no intact checkpoint.
  """
  settings = dict(locals())          # The arguments as called (gin's values).
  arguments.check_types(train_eval, {k: v for k, v in settings.items()
                                     if k not in ('root_dir', 'strategy')}, 'train_eval')
  if agent_type not in AGENTS + continuous.CONTINUOUS_AGENTS:
    raise ValueError(f'train_eval.agent_type must be one of '
                     f'{AGENTS + continuous.CONTINUOUS_AGENTS}, got {agent_type!r}')
  for name in ('batch_size', 'num_train_steps', 'steps_per_run', 'n_step'):
    if settings[name] < 1:
      raise ValueError(f'train_eval.{name} must be >= 1, got {settings[name]}')
  for name in ('eval_interval', 'eval_steps', 'checkpoint_interval', 'policy_save_interval',
               'summary_interval'):
    if settings[name] < 0:
      raise ValueError(f'train_eval.{name} must be >= 0, got {settings[name]}')
  if not 0 < fraction <= 1:
    raise ValueError(f'train_eval.fraction must be in (0, 1], got {fraction}')
  action_sets.check_data_action_set(data_action_set)
  if games:
    if continuous.is_continuous_agent(agent_type):
      raise ValueError(f'train_eval.games is for the Atari-style agents {AGENTS}, not '
                       f'agent_type {agent_type!r}')
    names = multi_game.check_games(games, full_action_space)
    game_mixture.normalized_weights(names, game_weights)   # Checks game_weights.
    settings['games'] = names
    game = '+'.join(names)
  else:
    if game_weights:
      raise ValueError('train_eval.game_weights needs train_eval.games (a multi-game run)')
    game = games_lib.canonical_game_name(game)
  if init_checkpoint is not None:
    if agent_type not in fine_tune.NETWORK_ATTRIBUTES:
      raise ValueError(f'train_eval.init_checkpoint works for agent_type '
                       f'{sorted(fine_tune.NETWORK_ATTRIBUTES)}, not {agent_type!r}')
    settings['init_checkpoint'] = os.path.abspath(init_checkpoint)
  strategy = strategy or tf.distribute.get_strategy()
  chief = strategy_lib.is_chief(strategy)
  # Non-chief workers write their files apart from the chief's.
  run_dir = root_dir if chief else os.path.join(root_dir, f'worker_{strategy_lib.task_index(strategy)}')
  tf.io.gfile.makedirs(run_dir)
  with run_dir_lib.RunLock(run_dir):
    what = (f'{agent_type} on {data_source}' if continuous.is_continuous_agent(agent_type)
            else f'{game} {agent_type} {backbone}/{aggregation} ({variant})')
    if init_checkpoint is not None:
      what += f', initialised from {init_checkpoint}'
    print(f'{what} under {strategy_lib.describe(strategy)}', flush=True)
    return _train_eval_locked(run_dir, strategy, chief, dict(settings, game=game))


def _train_eval_locked(run_dir: str, strategy: tf.distribute.Strategy, chief: bool,
                       settings) -> list:
  """`train_eval` on a locked run directory (`settings`: its checked arguments)."""
  s = settings
  game, seed, n_step = s['game'], s['seed'], s['n_step']
  tf.keras.utils.set_random_seed(seed)
  # The newest intact checkpoint (named in the state file the Learner reads).
  restored_step = run_dir_lib.recover_checkpoints(
      os.path.join(run_dir, learner_lib.TRAIN_DIR, learner_lib.POLICY_CHECKPOINT_DIR))
  if continuous.is_continuous_agent(s['agent_type']):
    return _train_eval_continuous(run_dir, strategy, chief, s, restored_step)

  if s['games']:
    eval_env = multi_game.make_eval_envs(s['games'], s['sticky_action_prob'],
                                         s['max_episode_frames'], seed)
    time_step_spec, action_spec = multi_game.specs(eval_env)
  else:
    eval_env = games_lib.make_env(game, sticky_action_prob=s['sticky_action_prob'],
                                  full_action_space=s['full_action_space'],
                                  max_episode_frames=s['max_episode_frames'], seed=seed)
    time_step_spec = tensor_spec.from_spec(eval_env.time_step_spec())
    action_spec = tensor_spec.from_spec(eval_env.action_spec())
  tables = list(s['games']) or [game]

  # Data: Reverb tables (one per game), filled once and checkpointed.
  server = None
  addresses = list(s['reverb_addresses'])
  try:
    if not addresses:
      server = reverb_stream.ReplayServer(tables, n_step=n_step,
                                          checkpoint_dir=os.path.join(run_dir, 'reverb'))
    _check_settings(run_dir, s, restored_step, table_restored=server is not None and any(
        server.is_filled(table) for table in tables))
    if server is not None:
      for table in tables:
        _fill_replay(server, table,
                     multi_game.game_data_source(s['data_source'], table, len(tables)),
                     s['fraction'], s['subset_mode'], s['data_seed'],
                     int(action_spec.maximum) + 1, s['full_action_space'],
                     s['data_action_set'])
      addresses = [server.address]
    return _train(run_dir, strategy, chief, s, restored_step, eval_env, time_step_spec,
                  action_spec, addresses)
  finally:
    if server is not None:
      server.stop()


def _train_eval_continuous(run_dir, strategy, chief, s, restored_step) -> list:
  """`_train_eval_locked` for the sequence agents on continuous control: a
  Minari / D4RL dataset in Reverb windows (`continuous.ContinuousData`); the
  run's `game` is the dataset's id."""
  data = continuous.ContinuousData(s['data_source'], s['game'], s['seed'],
                                   agent_type=s['agent_type'])
  s = dict(s, game=data.name)
  addresses = list(s['reverb_addresses'])
  try:
    if not addresses:
      data.start_server(run_dir)
    _check_settings(run_dir, s, restored_step, table_restored=data.table_restored())
    if not addresses:
      data.fill()
      addresses = [data.server.address]
    return _train(run_dir, strategy, chief, s, restored_step, data.eval_env, data.time_step_spec,
                  data.action_spec, addresses, continuous_data=data)
  finally:
    data.stop()


def _check_settings(run_dir, settings, restored_step, table_restored):
  """Checks this start's settings against the run's record (`run_dir.py`)."""
  fixed = {name: settings[name] for name in run_dir_lib.FIXED_SETTINGS}
  fixed['data_source'] = run_dir_lib.normalize_data_source(settings['data_source'])
  cls = agent_class(settings['agent_type'])
  configured = [(cls, _AGENT_ARGS_SET_HERE)]
  if continuous.is_continuous_agent(settings['agent_type']):
    configured = continuous.configured_classes(settings['agent_type'])  # agent, network
  for configurable, passed in configured:
    hyperparameters = run_dir_lib.agent_hyperparameters(
        configurable, gin.get_bindings(configurable), passed=passed)
    fixed.update({f'{configurable.__name__}.{k}': v for k, v in hyperparameters.items()})
  adjustable = {k: v for k, v in settings.items()
                if k not in fixed and k not in ('root_dir', 'strategy')}
  run_dir_lib.check_and_record_config(run_dir, fixed, adjustable, restored_step,
                                      table_restored)


def _train(run_dir, strategy, chief, s, restored_step, eval_env, time_step_spec, action_spec,
           addresses, continuous_data=None):
  """Builds the agent and Learner, trains, evaluates and exports.

  `continuous_data` (a `continuous.ContinuousData`) gives the sequence agents
  their windows, agent and evaluation; the loop is the same."""
  game, agent_type, seed = s['game'], s['agent_type'], s['seed']
  method = s['method'] or _default_method(s, continuous_data is not None)
  num_train_steps, eval_interval = s['num_train_steps'], s['eval_interval']
  multi = bool(s.get('games'))
  reference = _reference_scores(s.get('reference_scores'))
  if continuous_data is None and multi:
    dataset = game_mixture.make_distributed_dataset(
        strategy, addresses, s['games'], s['batch_size'], s['game_weights'], n_step=s['n_step'],
        timeout_seconds=s['reverb_timeout_seconds'])
  elif continuous_data is None:
    dataset = reverb_stream.make_distributed_dataset(
        strategy, addresses, [game], s['batch_size'], n_step=s['n_step'],
        timeout_seconds=s['reverb_timeout_seconds'])
  else:
    dataset = continuous_data.make_distributed_dataset(
        strategy, addresses, s['batch_size'], timeout_seconds=s['reverb_timeout_seconds'])

  with strategy.scope():
    train_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='train_step')
    if continuous_data is None:
      agent = make_agent(agent_type, time_step_spec, action_spec, s['backbone'], s['variant'],
                         s['aggregation'], s['feature_normalization'], s['n_step'], train_step)
    else:
      agent = continuous_data.make_agent(agent_type, train_step)
    if s.get('init_checkpoint') and restored_step is None:
      _initialize_from(agent, s, action_spec)
  if s['jit_compile']:
    # The Learner already runs the train step in a tf.function; XLA needs a
    # function of its own, which cannot hold a cross-replica all-reduce.
    if strategy.num_replicas_in_sync > 1:
      raise ValueError('train_eval.jit_compile=True needs a single replica per worker '
                       f'(got {strategy.num_replicas_in_sync}); TPUStrategy compiles with XLA '
                       'without it')
    agent.train = common.function(agent.train, jit_compile=True)

  learner = learner_lib.Learner(
      run_dir, train_step, agent, strategy=strategy,
      checkpoint_interval=s['checkpoint_interval'], summary_interval=s['summary_interval'],
      direct_sampling=True, max_checkpoints_to_keep=2)
  iterator = iter(dataset)
  start = int(train_step.numpy())
  if restored_step is not None and start != restored_step:
    raise run_dir_lib.RunDirError(
        f'{run_dir}: restored step {start}, expected ckpt-{restored_step}')
  if start:
    logging.info('Resumed %s at step %d', run_dir, start)
    print(f'Resumed from checkpoint at step {start}', flush=True)
  exporter = None
  if chief:
    if continuous_data is None:
      info = dict(backbone=s['backbone'], aggregation=s['aggregation'],
                  variant=str(s['variant']))
      if multi:
        info['games'] = list(s['games'])
      if s.get('init_checkpoint'):
        info['init_checkpoint'] = s['init_checkpoint']
    else:
      info = dict(env_name=continuous_data.env_name, dataset=continuous_data.name)
    evaluation.write_run_info(run_dir, game, method, seed, agent_type=agent_type, **info)
    _trim_eval_records(run_dir, start)
    run_dir_lib.write_operative_config(run_dir, gin.operative_config_str(), restored_step)
    exporter = export.PolicyExporter(
        os.path.join(run_dir, 'policies'),
        {'greedy_policy': agent.policy, 'collect_policy': agent.collect_policy},
        train_step, interval=s['policy_save_interval'],
        info={'games': list(s['games'])} if multi else None)
    exported = exporter.exported_step()
    if exporter.has_export() and (exported is None or exported > start):
      # Exported after the checkpoint restored (or by an earlier version):
      # not this run's policy any more.
      _export(exporter, run_dir, f'{os.path.join(run_dir, "policies")} held '
              f'{"an unrecorded step" if exported is None else f"step {exported}"}, not a '
              f'policy of the restored step {start}')
  progress = ProgressLogger(num_train_steps, start, learner.train_summary_writer)
  eval_writer = tf.summary.create_file_writer(os.path.join(run_dir, 'eval'))

  records = []
  step = start
  while step < num_train_steps:
    boundary = num_train_steps
    if eval_interval:
      boundary = min(boundary, (step // eval_interval + 1) * eval_interval)
    iterations = min(s['steps_per_run'], boundary - step)
    loss_info = learner.run(iterations=iterations, iterator=iterator)  # + checkpoint
    step = int(train_step.numpy())
    if chief:
      progress(step, loss_info)
      if exporter.due(step):
        _export(exporter, run_dir, f'every {s["policy_save_interval"]} steps')
        progress.restart_clock()
    if chief and eval_interval and (step % eval_interval == 0 or step == num_train_steps):
      if multi:
        game_records, results = multi_game.evaluate(
            agent.policy, s['games'], eval_env, step, num_steps=s['eval_steps'],
            epsilon=s['eval_epsilon'], max_episodes=s['eval_max_episodes'], seed=seed + step,
            reference_scores=reference)
        for record in game_records:
          evaluation.append_eval_record(run_dir, record)
          print(f'eval step {step}: {record["game"]} mean return {record["mean_return"]:.2f} '
                f'over {len(record["returns"])} episodes' + _score_text(record), flush=True)
        evaluation.write_eval_summaries(eval_writer, step, results, reference)
        records.extend(game_records)
        print(f'eval step {step}: {len(game_records)} games'
              f'{multi_game.iqm_line(game_records)}', flush=True)
        progress.restart_clock()
        continue
      if continuous_data is None:
        result = evaluation.evaluate_policy(agent.policy, eval_env, num_steps=s['eval_steps'],
                                            epsilon=s['eval_epsilon'],
                                            max_episodes=s['eval_max_episodes'],
                                            seed=seed + step,
                                            progress=f'Evaluating {game} at step {step}')
        record = evaluation.make_eval_record(game, step, result, reference_scores=reference)
        score = _score_text(record)
      else:
        record, result = continuous_data.evaluate(agent.policy, step, s['eval_max_episodes'])
        continuous.write_d4rl_summary(eval_writer, step, record)
        d4rl = record['d4rl_normalized']
        score = f', D4RL-normalised {d4rl:.1f}' if d4rl is not None else ''
        if record.get('success_rate') is not None:
          score += f', success rate {record["success_rate"]:.2f}'
      evaluation.append_eval_record(run_dir, record)
      evaluation.write_eval_summaries(eval_writer, step, {game: result}, reference)
      records.append(record)
      progress.restart_clock()
      print(f'eval step {step}: {game} mean return {record["mean_return"]:.2f} over '
            f'{len(result.returns)} episodes{score}', flush=True)
  # Final checkpoint (the interval trigger may not have fired), then the policies.
  for trigger in learner.triggers:
    trigger(step, force_trigger=True)
  if exporter is not None and exporter.last_step != step and (
      s['policy_save_interval'] or exporter.has_export()):
    _export(exporter, run_dir, 'end of training')
  eval_writer.flush()
  return records


def _default_method(s, is_continuous: bool) -> str:
  """The run's method name in reports when `train_eval.method` is unset:
  'cql_vit_ts_none'; for the ResNet (no aggregation) 'cql_resnet34', plus
  '_feature_norm' and '_finetune' (Scaled QL runs)."""
  if is_continuous:
    return s['agent_type']
  if s['backbone'] != 'resnet':
    return f'{s["agent_type"]}_{s["backbone"]}_{s["aggregation"]}'
  variant = s['variant'] if s['variant'].startswith('resnet') else f'resnet_{s["variant"]}'
  return (f'{s["agent_type"]}_{variant}' + ('_feature_norm' if s['feature_normalization'] else '')
          + ('_finetune' if s.get('init_checkpoint') else ''))


def _score_text(record) -> str:
  """', DQN-normalised X' (Table 3 games), ', normalised X' (reference_scores) or ''."""
  normalized = record['normalized']
  if normalized is None:
    return ''
  table_3 = record['game'] in normalization.TABLE_3
  return f', {"DQN-normalised" if table_3 else "normalised"} {normalized:.3f}'


def _reference_scores(path: Optional[str]):
  """{game: ReferenceScores} of `train_eval.reference_scores` (None: Table 3 only)."""
  if not path:
    return None
  try:
    return normalization.load_reference_scores(path)
  except (OSError, ValueError) as e:
    raise ValueError(f'train_eval.reference_scores: {e}') from e


def _initialize_from(agent, s, action_spec):
  """Fine-tuning: the agent's network from `s['init_checkpoint']` (`fine_tune.py`)."""
  requested = {name: s[name] for name in fine_tune.ARCHITECTURE_SETTINGS}
  requested['num_actions'] = int(action_spec.maximum) + 1
  network = getattr(agent, fine_tune.NETWORK_ATTRIBUTES[s['agent_type']])
  fine_tune.initialize_from_checkpoint(s['init_checkpoint'], network, requested,
                                       list(s['games']) or [s['game']])


def _export(exporter, run_dir, why):
  step = exporter.export()
  print(f'Exported the policies of step {step} to {os.path.join(run_dir, "policies")} '
        f'({why})', flush=True)
