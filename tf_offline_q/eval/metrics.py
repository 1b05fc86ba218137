"""Aggregate metrics over runs and games (Agarwal et al., 2021; rliable).

Every function takes plain numpy score matrices, normally DQN-normalised:

  scores         float [num_runs, num_games]              one score per run x game
  score curves   float [num_runs, num_games, num_evals]   scores at each evaluation
  score_dict     {method: scores}                          methods may differ in
                                                           num_runs and num_games

Confidence intervals are 95% percentile intervals from rliable's *stratified*
bootstrap: runs are resampled with replacement independently within each game
(the games themselves are kept). With a single run per game the interval
collapses to the point estimate.

rliable's bootstrap draws from NumPy's global RNG; the functions here seed it
with `seed` and restore its previous state afterwards, so results are
reproducible and callers' random streams are left alone.
"""
import contextlib
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from rliable import library as rly_library
from rliable import metrics as rly_metrics

# Aggregate name -> function of a `[num_runs, num_games]` score matrix.
AGGREGATES: Mapping[str, Callable[[np.ndarray], float]] = {
    'IQM': rly_metrics.aggregate_iqm,
    'Median': rly_metrics.aggregate_median,
    'Mean': rly_metrics.aggregate_mean,
    'OptimalityGap': rly_metrics.aggregate_optimality_gap,
}

DEFAULT_REPS = 2000


class Estimate(NamedTuple):
  """A point estimate with its confidence interval `[lower, upper]`."""
  point: float
  lower: float
  upper: float


@contextlib.contextmanager
def _seeded_numpy_global_rng(seed: Optional[int]):
  state = np.random.get_state()
  np.random.seed(seed)
  try:
    yield
  finally:
    np.random.set_state(state)


def check_scores(scores, name: str = 'scores', ndim: int = 2) -> np.ndarray:
  """`scores` as a finite float64 array of rank `ndim`; ValueError naming it."""
  array = np.asarray(scores, dtype=np.float64)
  if array.ndim != ndim:
    shape = ('[num_runs, num_games]' if ndim == 2 else
             '[num_runs, num_games, num_evals]')
    raise ValueError(
        f'{name} must have shape {shape}, got shape {array.shape}')
  if array.size == 0 or min(array.shape) == 0:
    raise ValueError(f'{name} is empty (shape {array.shape})')
  if not np.all(np.isfinite(array)):
    raise ValueError(f'{name} contains NaN or infinite values')
  return array


def iqm(scores) -> float:
  """Interquartile mean of all `[num_runs, num_games]` scores pooled together.

  The 25% trimmed mean: the mean of the middle 50% of the num_runs * num_games
  scores (scipy's `trim_mean`, which is what rliable uses).
  """
  return float(rly_metrics.aggregate_iqm(check_scores(scores)))


def aggregate_scores(scores) -> Dict[str, float]:
  """Every aggregate in `AGGREGATES` of one `[num_runs, num_games]` matrix."""
  scores = check_scores(scores)
  return {name: float(fn(scores)) for name, fn in AGGREGATES.items()}


def interval_estimates(
    score_dict: Mapping[str, np.ndarray],
    aggregates: Sequence[str] = ('IQM',),
    reps: int = DEFAULT_REPS,
    confidence: float = 0.95,
    seed: Optional[int] = 0,
) -> Dict[str, Dict[str, Estimate]]:
  """Point estimates and stratified-bootstrap CIs of aggregate scores.

  Args:
    score_dict: {method: float `[num_runs, num_games]`}.
    aggregates: names from `AGGREGATES`.
    reps: bootstrap replications.
    confidence: coverage of the percentile intervals.
    seed: seed of the bootstrap.

  Returns:
    {method: {aggregate: Estimate(point, lower, upper)}}.
  """
  unknown = [a for a in aggregates if a not in AGGREGATES]
  if unknown:
    raise ValueError(
        f'Unknown aggregates {unknown}; known: {", ".join(AGGREGATES)}')
  if not score_dict:
    raise ValueError('score_dict is empty: no methods to aggregate')
  checked = {m: check_scores(s, f'scores of {m!r}') for m, s in score_dict.items()}
  fns = [AGGREGATES[a] for a in aggregates]
  func = lambda x: np.array([fn(x) for fn in fns])
  with _seeded_numpy_global_rng(seed):
    points, cis = rly_library.get_interval_estimates(
        checked, func, reps=reps, confidence_interval_size=confidence)
  return {
      method: {
          a: Estimate(float(points[method][i]), float(cis[method][0, i]),
                      float(cis[method][1, i]))
          for i, a in enumerate(aggregates)
      } for method in checked
  }


def iqm_with_ci(scores, reps: int = DEFAULT_REPS, confidence: float = 0.95,
                seed: Optional[int] = 0) -> Estimate:
  """IQM of `[num_runs, num_games]` scores with its stratified bootstrap CI."""
  return interval_estimates({'scores': scores}, ('IQM',), reps, confidence,
                            seed)['scores']['IQM']


def iqm_curve(score_curves, reps: int = DEFAULT_REPS, confidence: float = 0.95,
              seed: Optional[int] = 0) -> Tuple[np.ndarray, np.ndarray]:
  """IQM at each evaluation, with stratified bootstrap CIs (learning curves).

  Args:
    score_curves: float `[num_runs, num_games, num_evals]`.

  Returns:
    (iqm `[num_evals]`, ci `[2, num_evals]`: lower and upper bounds). Runs are
    resampled jointly across evaluations, as in rliable's sample-efficiency
    curves.
  """
  curves = check_scores(score_curves, 'score_curves', ndim=3)
  func = lambda x: np.array(
      [rly_metrics.aggregate_iqm(x[..., i]) for i in range(x.shape[-1])])
  with _seeded_numpy_global_rng(seed):
    points, cis = rly_library.get_interval_estimates(
        {'iqm_curve': curves}, func, reps=reps,
        confidence_interval_size=confidence)
  return np.asarray(points['iqm_curve']), np.asarray(cis['iqm_curve'])


def default_taus(score_dict: Mapping[str, np.ndarray],
                 num: int = 81) -> np.ndarray:
  """Thresholds spanning 0 .. the largest score (at least 0 .. 2 DQN)."""
  top = max(float(np.max(s)) for s in score_dict.values())
  return np.linspace(0.0, max(2.0, top * 1.05), num)


def performance_profiles(
    score_dict: Mapping[str, np.ndarray],
    taus: Optional[np.ndarray] = None,
    reps: int = DEFAULT_REPS,
    confidence: float = 0.95,
    seed: Optional[int] = 0,
) -> Tuple[np.ndarray, Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """Score distributions: fraction of runs x games with score > tau.

  Args:
    score_dict: {method: float `[num_runs, num_games]`}.
    taus: thresholds (default: `default_taus`).

  Returns:
    (taus `[T]`, {method: profile `[T]`}, {method: ci `[2, T]`}).
  """
  if not score_dict:
    raise ValueError('score_dict is empty: no methods to profile')
  checked = {m: check_scores(s, f'scores of {m!r}') for m, s in score_dict.items()}
  taus = default_taus(checked) if taus is None else np.asarray(taus, np.float64)
  with _seeded_numpy_global_rng(seed):
    profiles, cis = rly_library.create_performance_profile(
        checked, taus, reps=reps, confidence_interval_size=confidence)
  return (taus, {m: np.asarray(p) for m, p in profiles.items()},
          {m: np.asarray(c) for m, c in cis.items()})
