"""What the continuous-control path of `train_eval` does differently from Atari.

`train_eval` runs one loop (TF-Agents `Learner`, checkpoints, resume,
TensorBoard, SavedModel export, periodic evaluation to `eval/returns.jsonl`)
for every agent; for the agents on continuous control (`agent_type` 'dt',
'sequence_bc', 'qt', 'q_transformer' and 'q_transformer_bc',
`CONTINUOUS_AGENTS`) this module gives the three parts that differ. Each agent says which Reverb windows it
trains on (`window_layout`, known from gin before it is built:
`configured_layout`): the DT's K = `DecisionTransformerNetwork.context_length`
steps; QT's also carry the observation after their last step; Q-Transformer's
are K = `QTransformerAgent.n_step` steps with s_{t+n} and the discounted
Monte-Carlo return-to-go G_t (gamma = `QTransformerAgent.gamma`, per episode,
at write time), which the agent turns into its per-step batch
(`q_transformer.batch_from_window`); Q-Transformer BC's are the same layout
with K = 1 (`q_transformer_bc.window_layout`).

  data   `load_dataset`: a Minari dataset ('minari:ROOT:DATASET_ID') or a D4RL
         HDF5 file ('d4rl:PATH'), checked against the evaluation environment;
         `fill_windows` / `make_window_dataset`: Reverb window tables
         (`reverb_windows`, checkpointed under the run like the Atari tables).
  agent  `make_continuous_agent`: the `DecisionTransformerAgent` (sequence BC is
         the same agent with `condition_on_returns=False`), `QtAgent`, or the
         `QTransformerAgent` (or `QTransformerBcAgent`: behaviour cloning on
         the same network) on an `ActionTransformerQNetwork`, with the
         dataset's state mean / std and (DT, QT), unless gin sets one, the
         dataset's `ref_max_score` (the expert's return) as the target return.
  eval   `evaluate_continuous`: whole episodes in a `PyDriver` with the greedy
         policy, no exploration noise, and the environment's success flag;
         `make_continuous_eval_record`: the `returns.jsonl` record, with
         `normalized` the D4RL score on the fraction scale
         (R - ref_min) / (ref_max - ref_min), `d4rl_normalized` the same times
         100 (D4RL's convention) and `success_rate` (mazes, Fetch). On Fetch
         (`SUCCESS_SCALE_FAMILIES`: a return is 1 on success, else 0) the score
         is the success rate itself: `normalized` = success rate, and
         `write_reference_scores` gives these datasets random 0, reference 1.

Runs are named after the dataset: `run.json`'s `game` and the records' `game`
are the dataset id, so `launch/report.py --reference_scores=FILE` (written
by `write_reference_scores`) aggregates them like Atari games.
"""
import inspect
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q.agents import decision_transformer as dt
from tf_offline_q.agents import q_transformer
from tf_offline_q.agents import q_transformer_bc
from tf_offline_q.agents import qt
from tf_offline_q.data import minari_data
from tf_offline_q.data import reverb_windows
from tf_offline_q.eval import evaluation
from tf_offline_q.eval import normalization
from tf_offline_q.networks import action_transformer

CONTINUOUS_AGENTS = ('dt', 'sequence_bc', 'qt', 'q_transformer', 'q_transformer_bc')
DEFAULT_EVAL_EPISODES = 10
# Environment families whose episode return is 1 on success, else 0: their
# score is the success rate (reference scores random 0, 1.0 = always succeeds).
SUCCESS_SCALE_FAMILIES = ('fetch',)
# Arguments `make_continuous_agent` passes itself (the others come from gin and
# are recorded as the run's fixed settings; the target return only shapes
# evaluation, so it may change on resume).
AGENT_ARGS_SET_HERE = ('time_step_spec', 'action_spec', 'dt_network', 'target_return',
                       'default_target_return', 'train_step_counter')
NETWORK_ARGS_SET_HERE = ('observation_spec', 'action_spec', 'condition_on_returns',
                         'observation_mean', 'observation_std', 'name')
Q_TRANSFORMER_AGENT_ARGS_SET_HERE = ('time_step_spec', 'action_spec', 'q_network', 'optimizer',
                                     'train_step_counter')
Q_TRANSFORMER_NETWORK_ARGS_SET_HERE = ('observation_spec', 'action_spec', 'observation_mean',
                                       'observation_std', 'name')


def is_continuous_agent(agent_type: str) -> bool:
  return agent_type in CONTINUOUS_AGENTS


def configured_classes(agent_type: str):
  """[(gin configurable, arguments `make_continuous_agent` passes itself)] of
  an agent type: `train_eval` records the others as the run's fixed settings."""
  if agent_type in ('q_transformer', 'q_transformer_bc'):
    agent = (q_transformer.QTransformerAgent if agent_type == 'q_transformer' else
             q_transformer_bc.QTransformerBcAgent)
    return [(agent, Q_TRANSFORMER_AGENT_ARGS_SET_HERE),
            (action_transformer.ActionTransformerQNetwork, Q_TRANSFORMER_NETWORK_ARGS_SET_HERE)]
  agent = qt.QtAgent if agent_type == 'qt' else dt.DecisionTransformerAgent
  return [(agent, AGENT_ARGS_SET_HERE), (dt.DecisionTransformerNetwork, NETWORK_ARGS_SET_HERE)]


def table_name(metadata: Dict[str, Any]) -> str:
  """The Reverb table of a dataset (its id, '/' replaced)."""
  return str(metadata.get('dataset_id') or 'dataset').replace('/', '.')


def dataset_name(metadata: Dict[str, Any]) -> str:
  """The name runs of this dataset are reported under (its id)."""
  return str(metadata.get('dataset_id') or metadata.get('env_name') or 'dataset')


# -------------------------------------------------------------------- data
def load_dataset(data_source: Optional[str], env_name: Optional[str] = None
                 ) -> Tuple[List[minari_data.ContinuousEpisode], Dict[str, Any]]:
  """(episodes, metadata) of 'minari:ROOT:DATASET_ID' or 'd4rl:PATH'.

  Raises:
    ValueError: no or a malformed source, or a dataset whose spaces do not
      match `env_name` (the message names the dataset and field).
    FileNotFoundError: the dataset does not exist (named, with how to make it).
  """
  if not data_source:
    raise ValueError('train_eval.data_source is not set: give "minari:ROOT:DATASET_ID" or '
                     '"d4rl:PATH.hdf5" for the continuous agents '
                     f'{CONTINUOUS_AGENTS}')
  if not minari_data.is_continuous_source(data_source):
    raise ValueError(f'train_eval.data_source={data_source!r} is not a continuous-control '
                     'dataset: the agents dt / sequence_bc read "minari:ROOT:DATASET_ID" or '
                     '"d4rl:PATH.hdf5"')
  episodes, metadata = minari_data.load_source(data_source, env_name)
  if not episodes:
    raise ValueError(f'{data_source}: holds no episode')
  return episodes, metadata


def observation_stats(episodes: Sequence[minari_data.ContinuousEpisode]
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """Mean and std `[obs_dim]` of the dataset's states (DT's normalisation:
  every observation but each episode's final one)."""
  states = np.concatenate([np.asarray(e.observations[:-1], np.float64) for e in episodes])
  return states.mean(0).astype(np.float32), (states.std(0) + 1e-6).astype(np.float32)


def start_window_server(run_dir: str, metadata: Dict[str, Any],
                        layout: reverb_windows.WindowLayout) -> reverb_windows.WindowServer:
  """An in-process window server checkpointed in RUN_DIR/reverb."""
  return reverb_windows.WindowServer({table_name(metadata): layout},
                                     checkpoint_dir=os.path.join(run_dir, 'reverb'))


def fill_windows(server: reverb_windows.WindowServer, episodes, metadata: Dict[str, Any],
                 short_episodes: str = 'pad'):
  """Fills the dataset's table once (a restored table is kept), checkpoints it."""
  table = table_name(metadata)
  if server.is_filled(table):
    print(f'Reverb table {table} restored from its checkpoint; not refilled.', flush=True)
    return None
  stats = server.fill(table, episodes, short_episodes=short_episodes,
                      source=dataset_name(metadata))
  print(f'Loaded {stats.steps} steps ({stats.items} windows of '
        f'{server.layout(table).context_length}) from {dataset_name(metadata)} into Reverb '
        f'at {stats.steps_per_second:,.0f} steps/s', flush=True)
  server.checkpoint()
  return stats


# ------------------------------------------------------------------- agent
def make_continuous_agent(agent_type: str, time_step_spec, action_spec,
                          observation_mean: Optional[np.ndarray] = None,
                          observation_std: Optional[np.ndarray] = None,
                          default_target_return: Optional[float] = None,
                          train_step_counter: Optional[tf.Variable] = None):
  """The DT ('dt'), sequence-BC ('sequence_bc'), QT ('qt'), Q-Transformer
  ('q_transformer') or Q-Transformer BC ('q_transformer_bc') agent (call
  under `strategy.scope()`); sizes and optimiser come from gin
  (`DecisionTransformerNetwork`, `DecisionTransformerAgent`, `QtAgent`;
  `ActionTransformerQNetwork`, `QTransformerAgent`, `QTransformerBcAgent`)."""
  if agent_type not in CONTINUOUS_AGENTS:
    raise ValueError(f'Unknown continuous agent_type {agent_type!r}; expected one of '
                     f'{CONTINUOUS_AGENTS}')
  if agent_type in ('q_transformer', 'q_transformer_bc'):
    # gin: ActionTransformerQNetwork, QTransformerAgent / QTransformerBcAgent
    q_network = action_transformer.ActionTransformerQNetwork(
        time_step_spec.observation, action_spec, observation_mean=observation_mean,
        observation_std=observation_std)
    agent = configured_classes(agent_type)[0][0]
    return agent(time_step_spec, action_spec, q_network, train_step_counter=train_step_counter)
  network = dt.DecisionTransformerNetwork(
      time_step_spec.observation, action_spec,
      condition_on_returns=agent_type != 'sequence_bc',
      observation_mean=observation_mean, observation_std=observation_std)
  if agent_type == 'qt':  # QT: the DT policy plus critics (agents/qt.py; gin QtAgent)
    return qt.QtAgent(time_step_spec, action_spec, network,
                      default_target_return=default_target_return,
                      train_step_counter=train_step_counter)
  return dt.DecisionTransformerAgent(time_step_spec, action_spec, network,
                                     default_target_return=default_target_return,
                                     train_step_counter=train_step_counter)


# --------------------------------------------------------------------- run
class ContinuousData:
  """The dataset, evaluation environment and Reverb windows of one run.

  `train_eval` builds it for a continuous agent: the dataset is loaded (and
  checked against `game` when that is a continuous environment's name; any
  other `game`, e.g. the Atari default, is replaced by the dataset's
  environment), then `start_server` / `fill` / `make_distributed_dataset`
  give the learner its windows, `make_agent` the agent and `evaluate` the
  `returns.jsonl` records.
  """

  def __init__(self, data_source: Optional[str], game: Optional[str], seed: int,
               agent_type: Optional[str] = None):
    self.agent_type = agent_type  # decides the windows (`configured_layout`)
    from tf_offline_q.envs import continuous as continuous_envs  # pylint: disable=g-import-not-at-top
    from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
    env_name = game if game and continuous_envs.is_continuous_env(game) else None
    self.episodes, self.metadata = load_dataset(data_source, env_name)
    env_name = self.metadata.get('env_name') or env_name
    if not env_name:
      raise ValueError(f'{data_source}: the dataset names no environment (metadata '
                       '"env_name"); set train_eval.game to its continuous environment')
    self.env_name = continuous_envs.canonical_env_name(env_name)
    self.name = dataset_name(self.metadata)
    self.table = table_name(self.metadata)
    self.eval_env = games.make_env(self.env_name, seed=seed)
    self.time_step_spec = tensor_spec.from_spec(self.eval_env.time_step_spec())
    self.action_spec = tensor_spec.from_spec(self.eval_env.action_spec())
    self.server = None

  @property
  def layout(self) -> reverb_windows.WindowLayout:
    """The windows of the agent as gin configures it (`configured_layout`)."""
    return configured_layout(self.agent_type, int(self.time_step_spec.observation.shape[0]),
                             int(self.action_spec.shape[0]))

  def start_server(self, run_dir: str) -> reverb_windows.WindowServer:
    self.server = start_window_server(run_dir, self.metadata, self.layout)
    return self.server

  def table_restored(self) -> bool:
    return self.server is not None and self.server.is_filled(self.table)

  def fill(self, short_episodes: str = 'pad'):
    return fill_windows(self.server, self.episodes, self.metadata, short_episodes)

  def make_distributed_dataset(self, strategy, addresses: Sequence[str], batch_size: int,
                               timeout_seconds: Optional[float] = None):
    return reverb_windows.make_distributed_window_dataset(
        strategy, addresses, [self.table], self.layout, batch_size,
        timeout_seconds=timeout_seconds)

  def make_agent(self, agent_type: str, train_step_counter=None):
    mean, std = observation_stats(self.episodes)
    agent = make_continuous_agent(agent_type, self.time_step_spec, self.action_spec, mean, std,
                                  self.metadata.get('ref_max_score'), train_step_counter)
    if agent.window_layout != self.layout:
      raise ValueError(f'The agent\'s windows {agent.window_layout} differ from the '
                       f'table\'s {self.layout}')
    return agent

  def evaluate(self, policy, step: int, num_episodes: Optional[int]):
    """(record, EvalResult) of `num_episodes` (None: 10) greedy episodes."""
    successes = []
    result = evaluate_continuous(policy, self.eval_env, num_episodes or DEFAULT_EVAL_EPISODES,
                                 successes=successes)
    return make_continuous_eval_record(self.metadata, step, result, successes), result

  def stop(self):
    if self.server is not None:
      self.server.stop()
      self.server = None
    self.eval_env.close()


def _configured(configurable, name: str):
  """`configurable`'s argument `name` as gin binds it (else its default)."""
  default = inspect.signature(configurable.__init__).parameters[name].default
  return gin.get_bindings(configurable).get(name, default)


def _configured_int(configurable, name: str) -> int:
  value = _configured(configurable, name)
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{configurable.__name__}.{name} must be an int >= 1, got {value!r}')
  return value


def configured_context_length() -> int:
  """`DecisionTransformerNetwork.context_length` as gin sets it (else its default)."""
  return _configured_int(dt.DecisionTransformerNetwork, 'context_length')


def configured_layout(agent_type: Optional[str], observation_dim: int,
                      action_dim: int) -> reverb_windows.WindowLayout:
  """The windows the agent of `agent_type` will ask for (`window_layout`), from
  gin, before it is built (the Reverb table is made and filled first):
  'q_transformer': K = `QTransformerAgent.n_step`, s_{t+n}, G_t with its
  gamma; 'q_transformer_bc': the same with K = 1 (fixed); 'qt': the DT's K
  plus the next observation; 'dt' / 'sequence_bc': K =
  `DecisionTransformerNetwork.context_length`."""
  if agent_type == 'q_transformer_bc':
    return q_transformer_bc.window_layout(observation_dim, action_dim)
  if agent_type == 'q_transformer':
    gamma = _configured(q_transformer.QTransformerAgent, 'gamma')
    return reverb_windows.WindowLayout(
        _configured_int(q_transformer.QTransformerAgent, 'n_step'), observation_dim, action_dim,
        next_observation=True, gamma=float(gamma))
  return reverb_windows.WindowLayout(configured_context_length(), observation_dim, action_dim,
                                     next_observation=agent_type == 'qt')


def write_d4rl_summary(summary_writer, step: int, record: Dict[str, Any]):
  """TensorBoard Eval/D4RLNormalizedScore/{dataset} (0-100) of a record."""
  if record.get('d4rl_normalized') is None:
    return
  with summary_writer.as_default():
    tf.summary.scalar(f'Eval/D4RLNormalizedScore/{record["game"]}', record['d4rl_normalized'],
                      step=step)
  summary_writer.flush()


# -------------------------------------------------------------- evaluation
def evaluate_continuous(policy: evaluation.PolicyLike, env,
                        num_episodes: int = DEFAULT_EVAL_EPISODES,
                        max_steps: Optional[int] = None,
                        successes: Optional[List[bool]] = None) -> evaluation.EvalResult:
  """Plays `num_episodes` whole episodes of the (greedy) policy, no noise.

  Args:
    policy: a `TFPolicy`, `PyPolicy` or PolicySaver directory.
    env: an unbatched continuous `PyEnvironment` (reset here).
    num_episodes: episodes to complete.
    max_steps: optional cap on agent steps (the episode in progress is dropped).
    successes: if given, a list to which each completed episode's success
      flag is appended (environments with `last_episode['success']`, as
      `envs.continuous.ContinuousEnvironment`; others append nothing).
  """
  if num_episodes < 1:
    raise ValueError(f'num_episodes must be >= 1, got {num_episodes}')
  policy = evaluation.as_py_policy(policy)
  if tuple(policy.action_spec.shape) != tuple(env.action_spec().shape):
    raise ValueError(f'The policy\'s actions {policy.action_spec} do not fit the '
                     f'environment\'s {env.action_spec()}')
  if tuple(policy.time_step_spec.observation.shape) != tuple(env.observation_spec().shape):
    raise ValueError(f'The policy expects observations {policy.time_step_spec.observation} '
                     f'but the environment gives {env.observation_spec()}')
  recorder = evaluation._EpisodeRecorder()  # pylint: disable=protected-access
  observers = [recorder]
  if successes is not None:
    def record_success(trajectory):  # when the recorder completes an episode
      episode = getattr(env, 'last_episode', None)
      if (int(trajectory.step_type) != ts.StepType.LAST and
          int(trajectory.next_step_type) == ts.StepType.LAST and
          isinstance(episode, dict) and 'success' in episode):
        successes.append(bool(episode['success']))
    observers.append(record_success)
  driver = py_driver.PyDriver(env, policy, observers, max_steps=max_steps,
                              max_episodes=num_episodes, end_episode_on_boundary=False)
  driver.run(env.reset(), policy.get_initial_state(1))
  return evaluation.EvalResult(returns=list(recorder.returns), lengths=list(recorder.lengths),
                               num_steps=recorder.num_steps)


def d4rl_fraction(score: float, metadata: Dict[str, Any]) -> Optional[float]:
  """(R - ref_min) / (ref_max - ref_min), or None without reference scores."""
  if metadata.get('ref_min_score') is None or metadata.get('ref_max_score') is None:
    return None
  return normalization.d4rl_normalized_score_from_metadata(score, metadata) / 100.0


def is_success_scale(metadata: Dict[str, Any]) -> bool:
  """Whether the dataset's environment scores by success (return 1 or 0: Fetch)."""
  from tf_offline_q.envs import continuous as continuous_envs  # pylint: disable=g-import-not-at-top
  env_name = metadata.get('env_name')
  return bool(env_name) and continuous_envs.is_continuous_env(env_name) and \
      continuous_envs.env_family(env_name) in SUCCESS_SCALE_FAMILIES


def make_continuous_eval_record(metadata: Dict[str, Any], step: int,
                                result: evaluation.EvalResult,
                                successes: Optional[Sequence[bool]] = None) -> Dict[str, Any]:
  """The `returns.jsonl` record: `normalized` on the fraction scale (as the
  Atari records and report.py), `d4rl_normalized` on D4RL's 0-100 scale, and,
  given the episodes' success flags, `successes` and `success_rate`. On a
  success-scale dataset (Fetch) `normalized` is the success rate (= the mean
  return there), matching `write_reference_scores`."""
  record = evaluation.make_eval_record(dataset_name(metadata), step, result)
  fraction = d4rl_fraction(record['mean_return'], metadata)
  record['normalized'] = fraction
  record['d4rl_normalized'] = None if fraction is None else 100.0 * fraction
  if successes:
    if len(successes) != len(record['returns']):
      raise ValueError(f'{len(successes)} success flags for {len(record["returns"])} episodes')
    record['successes'] = [bool(x) for x in successes]
    record['success_rate'] = float(np.mean(successes))
  if is_success_scale(metadata):
    record['normalized'] = record.get('success_rate', record['mean_return'])
  return record


def write_reference_scores(path: str, metadatas: Sequence[Dict[str, Any]]) -> str:
  """A report.py reference-scores file for these datasets, keyed by dataset id
  (the runs' `game`): random = ref_min_score and the 1.0 point ('dqn_replay')
  = ref_max_score ("one_means": "expert"), so report.py's normalised scores
  are D4RL scores / 100; success-scale datasets (Fetch) get random 0 and 1.0
  ("one_means": "success rate 1"), so the report's scores are success rates."""
  scores, one_means = {}, {}
  for metadata in metadatas:
    name = dataset_name(metadata)
    if is_success_scale(metadata):
      scores[name] = {'random': 0.0, 'dqn_replay': 1.0}
      one_means[name] = 'success rate 1'
      continue
    row = normalization.d4rl_reference_scores(metadata, f'dataset {name!r}')
    scores[name] = {'random': row.random, 'dqn_replay': row.dqn_replay}
    one_means[name] = 'expert'
  return normalization.write_reference_scores(path, scores, one_means)
