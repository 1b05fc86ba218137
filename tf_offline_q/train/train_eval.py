"""The experiment loop of the paper: offline training from Reverb, periodic ALE evaluation.

`train_eval` is configured with gin (`gin/common.gin` holds Table 2, one file
per Table 1 row picks the backbone, `gin/local.gin` shrinks any of them).

  data      a Dopamine replay directory or a TFDS dataset, a `fraction` subset,
            loaded once into an in-process Reverb server (checkpointed, so a
            restarted run does not reload it), or external Reverb servers.
  learner   TF-Agents `Learner` under the run's strategy: checkpoints (agent,
            optimizer, step), policy SavedModels, train summaries.
  eval      every `eval_interval` steps: `eval_steps` agent steps of ALE with
            sticky actions, epsilon 0.001, returns to `eval/returns.jsonl` and
            TensorBoard (return, DQN-normalised score, IQM across games).

Run layout (`root_dir`): `train/` (checkpoints, TensorBoard), `policies/`
(greedy_policy, collect_policy SavedModels), `eval/` (returns.jsonl and
TensorBoard), `reverb/` (table checkpoint), `run.json`, `operative_config.gin`.
"""
import os
import time
from typing import Optional, Sequence

from absl import logging
import gin
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.train import learner as learner_lib
from tf_agents.train import triggers
from tf_agents.utils import common

from tf_offline_q.agents import bc
from tf_offline_q.agents import cql_c51
from tf_offline_q.data import reverb_stream
from tf_offline_q.envs import games
from tf_offline_q.eval import evaluation
from tf_offline_q.networks import q_network
from tf_offline_q.train import strategy as strategy_lib

AGENTS = ('cql', 'bc')


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
    if len(episode.action) and (episode.action.max() >= num_actions or episode.action.min() < 0):
      raise ValueError(
          f'{data_source} holds action {int(episode.action.max())}, outside the {num_actions} '
          'actions of the evaluation environment; set train_eval.full_action_space to match '
          'the action set the data was recorded with')
    yield episode


def _fill_replay(server, game, data_source, fraction, subset_mode, data_seed, num_actions):
  if server.is_filled(game):
    logging.info('Reverb table %s restored from its checkpoint; source not reloaded.', game)
    return
  if not data_source:
    raise ValueError('train_eval.data_source is not set: give "dopamine:REPLAY_DIR" or '
                     '"tfds:DATA_DIR:NAME" (or reverb_addresses of filled servers)')
  episodes = reverb_stream.iterate_source(reverb_stream.parse_source(data_source), fraction,
                                         subset_mode, data_seed)
  stats = server.fill(game, _checked_actions(episodes, num_actions, data_source))
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
               agent_type: str = 'cql',
               backbone: str = 'vit_ts',
               variant: str = 'S/14',
               aggregation: str = 'none',
               feature_normalization: bool = False,
               data_source: Optional[str] = None,
               reverb_addresses: Sequence[str] = (),
               fraction: float = 0.05,
               subset_mode: str = 'uniform',
               data_seed: int = 0,
               full_action_space: bool = False,
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
    agent_type: 'cql' (CqlC51Agent) or 'bc' (BehavioralCloningAgent).
    backbone, variant, aggregation, feature_normalization: the network.
    data_source: 'dopamine:REPLAY_DIR' or 'tfds:DATA_DIR:NAME'.
    reverb_addresses: external Reverb servers holding filled tables; if set,
      no in-process server is started and `data_source` is unused.
    fraction, subset_mode, data_seed: the dataset subset (paper: 5% uniform).
    full_action_space: 18 ALE actions instead of the game's minimal set
      (must match the data; DQN-Replay was recorded with minimal sets).
    n_step: n-step return of the agent and the Reverb item layout.
    batch_size: global batch size (Table 2: 32).
    num_train_steps: total gradient updates.
    steps_per_run: updates per `Learner.run` call (one progress line each).
    eval_interval: updates between evaluations (paper: 62,500); 0 = never.
    eval_steps, eval_max_episodes: evaluation budget (paper: 125K steps).
    eval_epsilon, sticky_action_prob, max_episode_frames: evaluation protocol.
    checkpoint_interval, policy_save_interval, summary_interval: in updates
      (policy_save_interval 0: no policy export).
    jit_compile: compile the train step with XLA.
    seed: TF / numpy seed of the run.
    method: name of the run's method in reports (default derived).
  Returns:
    The list of evaluation records written by this call.
  """
  if agent_type not in AGENTS:
    raise ValueError(f'train_eval.agent_type must be one of {AGENTS}, got {agent_type!r}')
  for name, value in (('batch_size', batch_size), ('num_train_steps', num_train_steps),
                      ('steps_per_run', steps_per_run)):
    if value < 1:
      raise ValueError(f'train_eval.{name} must be >= 1, got {value}')
  game = games.canonical_game_name(game)
  strategy = strategy or tf.distribute.get_strategy()
  chief = strategy_lib.is_chief(strategy)
  print(f'{game} {agent_type} {backbone}/{aggregation} ({variant}) under '
        f'{strategy_lib.describe(strategy)}', flush=True)
  # Non-chief workers write their files apart from the chief's.
  run_dir = root_dir if chief else os.path.join(root_dir, f'worker_{strategy_lib.task_index(strategy)}')
  tf.io.gfile.makedirs(run_dir)
  tf.keras.utils.set_random_seed(seed)
  method = method or f'{agent_type}_{backbone}_{aggregation}'

  eval_env = games.make_env(game, sticky_action_prob=sticky_action_prob,
                            full_action_space=full_action_space,
                            max_episode_frames=max_episode_frames, seed=seed)
  time_step_spec = tensor_spec.from_spec(eval_env.time_step_spec())
  action_spec = tensor_spec.from_spec(eval_env.action_spec())

  # Data: Reverb tables, filled once and checkpointed.
  server = None
  addresses = list(reverb_addresses)
  if not addresses:
    server = reverb_stream.ReplayServer([game], n_step=n_step,
                                        checkpoint_dir=os.path.join(run_dir, 'reverb'))
    _fill_replay(server, game, data_source, fraction, subset_mode, data_seed,
                 int(action_spec.maximum) + 1)
    addresses = [server.address]
  dataset = reverb_stream.make_distributed_dataset(strategy, addresses, [game], batch_size,
                                                   n_step=n_step)

  with strategy.scope():
    train_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='train_step')
    agent = make_agent(agent_type, time_step_spec, action_spec, backbone, variant, aggregation,
                       feature_normalization, n_step, train_step)
  if jit_compile:
    # The Learner already runs the train step in a tf.function; XLA needs a
    # function of its own, which cannot hold a cross-replica all-reduce.
    if strategy.num_replicas_in_sync > 1:
      raise ValueError('train_eval.jit_compile=True needs a single replica per worker '
                       f'(got {strategy.num_replicas_in_sync}); TPUStrategy compiles with XLA '
                       'without it')
    agent.train = common.function(agent.train, jit_compile=True)

  saved_model_dir = os.path.join(run_dir, 'policies')
  learner_triggers = []
  if chief and policy_save_interval:
    learner_triggers.append(triggers.PolicySavedModelTrigger(
        saved_model_dir, agent, train_step, interval=policy_save_interval))
  learner = learner_lib.Learner(
      run_dir, train_step, agent, triggers=learner_triggers, strategy=strategy,
      checkpoint_interval=checkpoint_interval, summary_interval=summary_interval,
      direct_sampling=True, max_checkpoints_to_keep=2)
  iterator = iter(dataset)
  start = int(train_step.numpy())
  if start:
    logging.info('Resumed %s at step %d', run_dir, start)
    print(f'Resumed from checkpoint at step {start}', flush=True)
  if chief:
    evaluation.write_run_info(run_dir, game, method, seed, agent_type=agent_type,
                              backbone=backbone, aggregation=aggregation, variant=str(variant))
    _trim_eval_records(run_dir, start)
    with tf.io.gfile.GFile(os.path.join(run_dir, 'operative_config.gin'), 'w') as f:
      f.write(gin.operative_config_str())
  progress = ProgressLogger(num_train_steps, start, learner.train_summary_writer)
  eval_writer = tf.summary.create_file_writer(os.path.join(run_dir, 'eval'))

  records = []
  step = start
  while step < num_train_steps:
    boundary = num_train_steps
    if eval_interval:
      boundary = min(boundary, (step // eval_interval + 1) * eval_interval)
    iterations = min(steps_per_run, boundary - step)
    loss_info = learner.run(iterations=iterations, iterator=iterator)
    step = int(train_step.numpy())
    if chief:
      progress(step, loss_info)
    if chief and eval_interval and (step % eval_interval == 0 or step == num_train_steps):
      result = evaluation.evaluate_policy(agent.policy, eval_env, num_steps=eval_steps,
                                          epsilon=eval_epsilon, max_episodes=eval_max_episodes,
                                          seed=seed + step)
      record = evaluation.make_eval_record(game, step, result)
      evaluation.append_eval_record(run_dir, record)
      evaluation.write_eval_summaries(eval_writer, step, {game: result})
      records.append(record)
      progress.restart_clock()
      normalized = record['normalized']
      print(f'eval step {step}: {game} mean return {record["mean_return"]:.2f} over '
            f'{len(result.returns)} episodes' +
            (f', DQN-normalised {normalized:.3f}' if normalized is not None else ''), flush=True)
  # Final checkpoint and policy (the interval triggers may not have fired).
  for trigger in learner.triggers:
    trigger(step, force_trigger=True)
  eval_writer.flush()
  if server is not None:
    server.stop()
  return records
