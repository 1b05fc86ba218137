"""Evaluating policies on Atari, and the evaluation results format.

Protocol (paper, Table 2; Dopamine's `Runner._run_one_phase`):

  * sticky actions (0.25), full action set, 108K-frame episode cap, DQN
    preprocessing: `make_atari_env` defaults;
  * epsilon-greedy with `epsilon = 0.001` on top of the (greedy) policy;
  * a budget of `num_steps = 125_000` agent steps per evaluation. As in
    Dopamine, episodes are played to completion: the episode in progress when
    the budget runs out is *finished* and counted, so the steps actually taken
    can exceed the budget by at most one episode (<= 27,000 steps with the
    108K-frame cap). Every evaluation therefore reports >= 1 whole episode.

The policy may be a `TFPolicy` (wrapped in `PyTFEagerPolicy`), a `PyPolicy`
(including a `SavedModelPyTFEagerPolicy`), or the path of a `PolicySaver`
SavedModel. Episodes are played with a TF-Agents `PyDriver`; returns are the
raw (unclipped) sums of the environment rewards.

Results format (shared with the trainer). A run directory `RUN_DIR` holds:

  RUN_DIR/run.json            {"game": "Pong", "method": "vit-cql",
                               "seed": 0, ...}
  RUN_DIR/eval/returns.jsonl  one JSON object a line, one line per evaluation:
      {"game": "Pong", "step": 62500, "returns": [..], "lengths": [..],
       "mean_return": float, "normalized": float | null}

`lengths` are in agent steps; `normalized` is `dqn_normalized_score` of
`mean_return` (fraction scale: random 0, DQN-Replay 1.0), null for games
outside Table 3. Both files are rewritten atomically (temp file + rename).
"""
import json
import math
import os
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional,
                    Sequence, Union)

from absl import logging
import numpy as np
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.environments import py_environment
from tf_agents.policies import py_policy
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import tf_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q.eval import metrics as eval_metrics
from tf_offline_q.eval import normalization
from tf_offline_q import progress as progress_lib
from tf_offline_q.files import atomic_write_text

EVAL_STEPS = 125_000
EVAL_EPSILON = 0.001

EVAL_DIR = 'eval'
RETURNS_FILE = 'returns.jsonl'
RUN_INFO_FILE = 'run.json'
EVAL_RECORD_KEYS = ('game', 'step', 'returns', 'lengths', 'mean_return',
                    'normalized')

PolicyLike = Union[tf_policy.TFPolicy, py_policy.PyPolicy, str]
EnvLike = Union[py_environment.PyEnvironment,
                Callable[[], py_environment.PyEnvironment], str]


# --------------------------------------------------------------- policies
class EpsilonGreedyPyPolicy(py_policy.PyPolicy):
  """With probability `epsilon` a uniform random action, else the policy's.

  The wrapped policy is called at every step (its state stays in sync). Works
  for any `PyPolicy`, including `PyTFEagerPolicy` and
  `SavedModelPyTFEagerPolicy`; random actions come from a seeded NumPy RNG.
  """

  def __init__(self,
               policy: py_policy.PyPolicy,
               epsilon: float,
               action_spec: Optional[array_spec.BoundedArraySpec] = None,
               seed: Optional[int] = None):
    """Wraps `policy`.

    Args:
      policy: the (greedy) policy.
      epsilon: probability of a random action, in [0, 1].
      action_spec: bounded spec to sample random actions from; defaults to the
        policy's (SavedModel policies lose their bounds: pass the env's).
      seed: seed of the exploration RNG.
    """
    if not 0.0 <= epsilon <= 1.0:
      raise ValueError(f'epsilon must be in [0, 1], got {epsilon}')
    action_spec = action_spec if action_spec is not None else policy.action_spec
    if not isinstance(action_spec, array_spec.BoundedArraySpec):
      raise ValueError(
          'EpsilonGreedyPyPolicy needs a bounded action spec to sample random '
          f'actions, got {action_spec!r}; pass the environment\'s action_spec.')
    super().__init__(policy.time_step_spec, action_spec,
                     policy.policy_state_spec, policy.info_spec)
    self._policy = policy
    self._epsilon = float(epsilon)
    self._rng = np.random.RandomState(seed)

  @property
  def wrapped_policy(self) -> py_policy.PyPolicy:
    return self._policy

  @property
  def epsilon(self) -> float:
    return self._epsilon

  def _get_initial_state(self, batch_size):
    return self._policy.get_initial_state(batch_size)

  def _action(self, time_step, policy_state):
    step = self._policy.action(time_step, policy_state)
    if self._epsilon > 0.0 and self._rng.uniform() < self._epsilon:
      action = array_spec.sample_bounded_spec(self.action_spec, self._rng)
      step = step._replace(action=action)
    return step


def load_saved_policy(policy_dir: str) -> py_policy.PyPolicy:
  """Loads a `PolicySaver` SavedModel as a `SavedModelPyTFEagerPolicy`.

  Raises:
    ValueError: `policy_dir` does not exist or is not a PolicySaver SavedModel
      (the message names it).
  """
  if not tf.io.gfile.isdir(policy_dir):
    raise ValueError(f'Policy directory {policy_dir!r} does not exist')
  missing = [f for f in ('saved_model.pb', 'policy_specs.pbtxt')
             if not tf.io.gfile.exists(os.path.join(policy_dir, f))]
  if missing:
    raise ValueError(
        f'{policy_dir!r} is not a TF-Agents PolicySaver SavedModel: missing '
        f'{", ".join(missing)}')
  try:
    return py_tf_eager_policy.SavedModelPyTFEagerPolicy(
        policy_dir, load_specs_from_pbtxt=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'Could not load the policy in {policy_dir!r}: {e}') from e


def as_py_policy(policy: PolicyLike) -> py_policy.PyPolicy:
  """A `PyPolicy` for a TFPolicy, a PyPolicy or a SavedModel directory."""
  if isinstance(policy, py_policy.PyPolicy):
    return policy
  if isinstance(policy, tf_policy.TFPolicy):
    return py_tf_eager_policy.PyTFEagerPolicy(policy, use_tf_function=True)
  if isinstance(policy, (str, os.PathLike)):
    return load_saved_policy(os.fspath(policy))
  raise TypeError(
      'policy must be a TFPolicy, a PyPolicy or a PolicySaver directory, got '
      f'{type(policy).__name__}')


def _check_compatible(policy: py_policy.PyPolicy,
                      env: py_environment.PyEnvironment) -> None:
  """Clear errors for observation / action spec mismatches (observations may
  be nests, e.g. the multi-game `{'frames', 'game_id'}`)."""
  policy_obs = policy.time_step_spec.observation
  env_obs = env.observation_spec()
  describe = lambda spec: tf.nest.map_structure(
      lambda s: f'{np.dtype(s.dtype)} {list(s.shape)}', spec)
  try:
    tf.nest.assert_same_structure(policy_obs, env_obs)
    same = all(tuple(p.shape) == tuple(e.shape) and np.dtype(p.dtype) == np.dtype(e.dtype)
               for p, e in zip(tf.nest.flatten(policy_obs), tf.nest.flatten(env_obs)))
  except (ValueError, TypeError):
    same = False
  if not same:
    raise ValueError(
        f'The policy expects observations {describe(policy_obs)} but the '
        f'environment gives {describe(env_obs)}')
  policy_act, env_act = policy.action_spec, env.action_spec()
  if (tuple(policy_act.shape) != tuple(env_act.shape) or
      not np.issubdtype(np.dtype(policy_act.dtype), np.integer)):
    raise ValueError(
        f'The policy\'s actions {policy_act} do not fit the environment\'s '
        f'{env_act}')
  # Action indices only mean the same thing with the same action set: a
  # 6-action (minimal set) policy on the 18-action env would press wrong keys.
  if isinstance(policy_act, array_spec.BoundedArraySpec) and (
      int(np.max(policy_act.maximum)) != int(np.max(env_act.maximum))):
    raise ValueError(
        f'The policy has {int(np.max(policy_act.maximum)) + 1} actions but '
        f'the environment {int(np.max(env_act.maximum)) + 1}: different action '
        'sets (full_action_space on one side only?)')


# ------------------------------------------------------------- evaluation
class EvalResult(NamedTuple):
  """Completed episodes of one evaluation.

  returns: raw (unclipped) episode returns, in completion order.
  lengths: episode lengths in agent steps.
  num_steps: agent steps taken in all (>= the budget unless `max_episodes`
    stopped it early; the last episode is finished, Dopamine-style).
  """
  returns: List[float]
  lengths: List[int]
  num_steps: int

  @property
  def num_episodes(self) -> int:
    return len(self.returns)

  @property
  def mean_return(self) -> float:
    return float(np.mean(self.returns)) if self.returns else float('nan')


class _EpisodeRecorder:
  """Driver observer: raw return and length of every completed episode."""

  def __init__(self):
    self.returns: List[float] = []
    self.lengths: List[int] = []
    self._return = 0.0
    self._length = 0
    self.num_steps = 0

  @property
  def in_progress(self) -> bool:
    return self._length > 0

  def __call__(self, traj):
    step_type = int(traj.step_type)
    if step_type == ts.StepType.LAST:  # LAST -> FIRST boundary: no env step.
      return
    if step_type == ts.StepType.FIRST:
      self._return, self._length = 0.0, 0
    self._return += float(traj.reward)
    self._length += 1
    self.num_steps += 1
    if int(traj.next_step_type) == ts.StepType.LAST:
      self.returns.append(self._return)
      self.lengths.append(self._length)
      self._return, self._length = 0.0, 0


def _make_env(env: EnvLike, seed: Optional[int]):
  """(environment, whether we own it)."""
  if isinstance(env, py_environment.PyEnvironment):
    return env, False
  if isinstance(env, str):
    from tf_offline_q.envs import games  # pylint: disable=g-import-not-at-top
    return games.make_env(env, full_action_space=True, seed=seed), True
  if callable(env):
    made = env()
    if not isinstance(made, py_environment.PyEnvironment):
      raise TypeError(
          f'env factory returned {type(made).__name__}, not a PyEnvironment')
    return made, True
  raise TypeError(
      'env must be a PyEnvironment, a zero-argument factory of one, or a game '
      f'name, got {type(env).__name__}')


class _ProgressObserver:
  """Trajectory observer printing evaluation progress (steps, rate, ETA, episodes)."""

  def __init__(self, label: str, num_steps: int, recorder: '_EpisodeRecorder'):
    self._progress = progress_lib.Progress(label, total=num_steps, unit='steps')
    self._recorder = recorder

  def __call__(self, trajectory) -> None:
    del trajectory   # Counts the recorder's environment steps (it observes first).
    self._progress.update(self._recorder.num_steps - self._progress.count)

  def done(self) -> None:
    returns = self._recorder.returns
    mean = f', mean return {np.mean(returns):.2f}' if returns else ''
    self._progress.done(f', {len(returns)} episodes{mean}', only_if_long=True)


def evaluate_policy(policy: PolicyLike,
                    env: EnvLike,
                    num_steps: int = EVAL_STEPS,
                    epsilon: float = EVAL_EPSILON,
                    max_episodes: Optional[int] = None,
                    seed: Optional[int] = None,
                    finish_last_episode: bool = True,
                    observers: Sequence[Callable[..., Any]] = (),
                    progress: Optional[str] = None) -> EvalResult:
  """Plays `policy` epsilon-greedily for a budget of agent steps.

  Args:
    policy: a greedy `TFPolicy`, `PyPolicy` or PolicySaver directory.
    env: an (unbatched) `PyEnvironment`, a zero-argument factory of one, or a
      game name (then `games.make_env(game, full_action_space=True, seed=seed)`:
      the paper's setup for ALE games; MinAtar-* names work too).
      The environment is reset first; one we build is closed at the end.
    num_steps: budget of agent steps (paper: 125,000).
    epsilon: exploration added on top of `policy` (paper: 0.001). Pass 0 if
      `policy` already explores.
    max_episodes: optionally stop after this many completed episodes.
    seed: seeds the exploration (and the environment, when built from a name).
    finish_last_episode: Dopamine's protocol (True): play the episode in
      progress at the end of the budget to its end and count it. False drops
      it (then an evaluation may have zero episodes).
    observers: extra trajectory observers for the driver, e.g. TF-Agents
      `py_metrics.AverageReturnMetric()` / `NumberOfEpisodes()` to log. They
      see every step, including the finished last episode.
    progress: a label: print a progress line (agent steps of the budget,
      steps/s, ETA, episodes so far) every 10 s while playing, and a final one.

  Returns:
    An `EvalResult` with per-episode returns and lengths.
  """
  if num_steps < 1:
    raise ValueError(f'num_steps must be >= 1, got {num_steps}')
  if max_episodes is not None and max_episodes < 1:
    raise ValueError(f'max_episodes must be >= 1 or None, got {max_episodes}')
  base_policy = as_py_policy(policy)
  environment, owned = _make_env(env, seed)
  try:
    if environment.batched:
      raise ValueError('evaluate_policy needs an unbatched environment')
    _check_compatible(base_policy, environment)
    eval_policy = base_policy
    if epsilon > 0.0:
      eval_policy = EpsilonGreedyPyPolicy(
          base_policy, epsilon, action_spec=environment.action_spec(),
          seed=seed)
    # Our recorder is a lean trajectory observer; TF-Agents `py_metrics` cost
    # about 0.5 ms a step each, so they are only added when asked for.
    recorder = _EpisodeRecorder()
    all_observers = [recorder] + list(observers)
    if progress:
      all_observers.append(_ProgressObserver(progress, num_steps, recorder))

    time_step = environment.reset()
    policy_state = eval_policy.get_initial_state(environment.batch_size or 1)
    driver = py_driver.PyDriver(
        environment, eval_policy, all_observers, max_steps=num_steps,
        max_episodes=max_episodes, end_episode_on_boundary=False)
    time_step, policy_state = driver.run(time_step, policy_state)
    episodes_left = (max_episodes - len(recorder.returns)
                     if max_episodes is not None else 1)
    if finish_last_episode and recorder.in_progress and episodes_left > 0:
      finisher = py_driver.PyDriver(
          environment, eval_policy, all_observers, max_episodes=1,
          end_episode_on_boundary=False)
      finisher.run(time_step, policy_state)
    if progress:
      all_observers[len(observers) + 1].done()
    return EvalResult(
        returns=list(recorder.returns),
        lengths=list(recorder.lengths),
        num_steps=recorder.num_steps)
  finally:
    if owned:
      environment.close()


# ---------------------------------------------------------------- records
def atomic_write_json(path: str, obj: Any) -> None:
  """Writes `obj` as JSON to `path` via a temporary file and a rename."""
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def returns_path(run_dir: str) -> str:
  return os.path.join(run_dir, EVAL_DIR, RETURNS_FILE)


def run_info_path(run_dir: str) -> str:
  return os.path.join(run_dir, RUN_INFO_FILE)


def _normalized_or_none(game: str, score: float,
                        reference_scores=None) -> Optional[float]:
  """DQN-normalised `score` (Table 3 or `reference_scores`), None without a
  reference for `game`."""
  try:
    return normalization.dqn_normalized_score(game, score, reference_scores)
  except ValueError:
    return None


def make_eval_record(game: str, step: int,
                     result: Union[EvalResult, Sequence[float]],
                     lengths: Optional[Sequence[int]] = None,
                     reference_scores=None) -> Dict[str, Any]:
  """The `returns.jsonl` record of one evaluation.

  Args:
    game: the game evaluated.
    step: training step (the x axis of learning curves).
    result: an `EvalResult`, or a sequence of episode returns (then pass
      `lengths`).
    lengths: episode lengths in agent steps, when `result` is a sequence.
    reference_scores: {game: ReferenceScores} for games outside Table 3
      (e.g. MinAtar; `normalization.load_reference_scores`): `normalized`
      uses them; None: Table 3 only.
  """
  if isinstance(result, EvalResult):
    returns, lengths = result.returns, result.lengths
  else:
    returns = result
    if lengths is None:
      raise ValueError('make_eval_record needs lengths with a list of returns')
  returns = [float(r) for r in returns]
  lengths = [int(l) for l in lengths]
  mean_return = float(np.mean(returns)) if returns else float('nan')
  record = {
      'game': game,
      'step': int(step),
      'returns': returns,
      'lengths': lengths,
      'mean_return': mean_return,
      'normalized': _normalized_or_none(game, mean_return, reference_scores),
  }
  _validate_record(record, 'record')
  return record


def _validate_record(record: Mapping[str, Any], where: str) -> None:
  if not isinstance(record, Mapping):
    raise ValueError(f'{where}: an evaluation record must be a JSON object')
  missing = [k for k in EVAL_RECORD_KEYS if k not in record]
  if missing:
    raise ValueError(f'{where}: evaluation record is missing {missing}')
  if not isinstance(record['game'], str) or not record['game']:
    raise ValueError(f'{where}: "game" must be a non-empty string')
  if (isinstance(record['step'], bool) or
      not isinstance(record['step'], (int, np.integer)) or record['step'] < 0):
    raise ValueError(f'{where}: "step" must be an integer >= 0, '
                     f'got {record["step"]!r}')
  returns, lengths = record['returns'], record['lengths']
  if not isinstance(returns, (list, tuple)) or not returns:
    raise ValueError(f'{where}: "returns" must be a non-empty list')
  if not isinstance(lengths, (list, tuple)) or len(lengths) != len(returns):
    raise ValueError(
        f'{where}: "lengths" must be a list as long as "returns" '
        f'({len(returns)})')
  for key in ('mean_return',):
    value = record[key]
    if not isinstance(value, (int, float)) or not math.isfinite(value):
      raise ValueError(f'{where}: "{key}" must be a finite number, got {value!r}')
  value = record['normalized']
  if value is not None and (not isinstance(value, (int, float)) or
                            not math.isfinite(value)):
    raise ValueError(
        f'{where}: "normalized" must be a finite number or null, got {value!r}')


def write_eval_records(run_dir: str,
                       records: Sequence[Mapping[str, Any]]) -> str:
  """Replaces `RUN_DIR/eval/returns.jsonl` with `records` (atomic rewrite).

  E.g. a resumed trainer keeping only the records up to its checkpoint:
  `write_eval_records(d, [r for r in read_eval_records(d) if r['step'] <= s])`.
  Records are validated and sorted by step. Returns the file's path.
  """
  records = [dict(r) for r in records]
  for i, record in enumerate(records):
    _validate_record(record, f'record {i} for {run_dir!r}')
  keys = [(r['game'], r['step']) for r in records]
  if len(set(keys)) != len(keys):
    raise ValueError(f'Records for {run_dir!r} repeat a (game, step) pair')
  records.sort(key=lambda r: (r['step'], r['game']))
  path = returns_path(run_dir)
  atomic_write_text(
      path, ''.join(json.dumps(r, sort_keys=True) + '\n' for r in records))
  return path


def append_eval_record(run_dir: str, record: Mapping[str, Any]) -> str:
  """Adds one evaluation to `RUN_DIR/eval/returns.jsonl` (atomic rewrite).

  A record with the same `game` and `step` as an existing one replaces it (a
  restarted trainer re-evaluating a step does not duplicate it). Returns the
  file's path.
  """
  record = dict(record)
  _validate_record(record, f'record for {run_dir!r}')
  path = returns_path(run_dir)
  records = read_eval_records(run_dir) if os.path.exists(path) else []
  records = [r for r in records
             if (r['game'], r['step']) != (record['game'], record['step'])]
  records.append(record)
  return write_eval_records(run_dir, records)


def read_eval_records(run_dir: str) -> List[Dict[str, Any]]:
  """Records of `RUN_DIR/eval/returns.jsonl`, sorted by step.

  Raises:
    FileNotFoundError: the file does not exist (named).
    ValueError: a line is not a valid record (file and line named).
  """
  path = returns_path(run_dir)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No evaluation results: {path} does not exist')
  records = []
  with open(path) as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f'{path}:{line_number}'
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f'{where}: not valid JSON ({e})') from e
      _validate_record(record, where)
      records.append(record)
  records.sort(key=lambda r: (r['step'], r['game']))
  return records


def write_run_info(run_dir: str, game: str, method: str, seed: int,
                   **extra: Any) -> str:
  """Writes `RUN_DIR/run.json` = {"game", "method", "seed", **extra}."""
  if not isinstance(method, str) or not method:
    raise ValueError(f'method must be a non-empty string, got {method!r}')
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f'seed must be an integer, got {seed!r}')
  info = dict(extra, game=str(game), method=method, seed=int(seed))
  path = run_info_path(run_dir)
  atomic_write_json(path, info)
  return path


def read_run_info(run_dir: str) -> Dict[str, Any]:
  """`RUN_DIR/run.json`; FileNotFoundError / ValueError naming the file."""
  path = run_info_path(run_dir)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No run metadata: {path} does not exist')
  with open(path) as f:
    try:
      info = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from e
  if not isinstance(info, dict):
    raise ValueError(f'{path}: must hold a JSON object')
  missing = [k for k in ('game', 'method', 'seed') if k not in info]
  if missing:
    raise ValueError(f'{path}: missing {missing}')
  return info


# ------------------------------------------------------------ TensorBoard
def write_eval_summaries(
    summary_writer: tf.summary.SummaryWriter, step: int,
    per_game_returns: Mapping[str, Union[EvalResult, Sequence[float]]],
    reference_scores=None,
) -> Dict[str, float]:
  """Writes evaluation scalars to TensorBoard.

  Scalars (at `step`):
    Eval/AverageReturn/{game}         mean raw episode return
    Eval/NumEpisodes/{game}           completed episodes
    Eval/DQNNormalizedScore/{game}    fraction scale (Table 3 games only)
    Eval/IQM_DQNNormalizedScore       IQM across the Table 3 games evaluated
                                      (one run: the games' scores), and the
                                      games of `reference_scores`

  Args:
    summary_writer: a `tf.summary` writer.
    step: training step.
    per_game_returns: {game: EvalResult or episode returns}.
    reference_scores: {game: ReferenceScores} of games outside Table 3.

  Returns:
    {summary name: value} of what was written.
  """
  if not per_game_returns:
    raise ValueError('per_game_returns is empty')
  values = {}
  normalized = []
  for game, result in per_game_returns.items():
    returns = result.returns if isinstance(result, EvalResult) else list(result)
    if not returns:
      logging.warning('No completed episode for %s at step %d', game, step)
      continue
    mean_return = float(np.mean(returns))
    values[f'Eval/AverageReturn/{game}'] = mean_return
    values[f'Eval/NumEpisodes/{game}'] = float(len(returns))
    score = _normalized_or_none(game, mean_return, reference_scores)
    if score is not None:
      values[f'Eval/DQNNormalizedScore/{game}'] = score
      normalized.append(score)
  if normalized:
    values['Eval/IQM_DQNNormalizedScore'] = eval_metrics.iqm(
        np.asarray(normalized)[None, :])
  with summary_writer.as_default():
    for name, value in values.items():
      tf.summary.scalar(name, value, step=step)
  summary_writer.flush()
  return values
