"""Tests of IQM, stratified bootstrap CIs and performance profiles."""
import numpy as np
import pytest

from tf_offline_q.eval import metrics


def test_iqm_matches_hand_computation():
  # 8 scores: drop the 2 lowest and 2 highest, average the middle 4.
  scores = np.array([[0.0, 10.0, 3.0, 4.0],
                     [5.0, 6.0, -7.0, 100.0]])
  assert metrics.iqm(scores) == pytest.approx((3.0 + 4.0 + 5.0 + 6.0) / 4)
  # 12 scores (3 runs x 4 games): middle 6 of the sorted values.
  scores = np.arange(12, dtype=float)[::-1].reshape(3, 4) ** 2
  middle = np.sort(scores.ravel())[3:9]
  assert metrics.iqm(scores) == pytest.approx(middle.mean())


def test_iqm_ignores_outliers_unlike_mean():
  scores = np.array([[1.0, 1.0, 1.0, 1000.0], [1.0, 1.0, 1.0, -1000.0]])
  aggregates = metrics.aggregate_scores(scores)
  assert aggregates['IQM'] == pytest.approx(1.0)
  assert aggregates['Median'] == pytest.approx(1.0)
  assert aggregates['Mean'] == pytest.approx(np.mean(scores))


def test_bootstrap_ci_contains_point_and_shrinks_with_more_runs():
  rng = np.random.RandomState(0)
  few = rng.normal(1.0, 0.5, size=(3, 5))
  many = rng.normal(1.0, 0.5, size=(60, 5))
  estimates = metrics.interval_estimates({'few': few, 'many': many},
                                         reps=500, seed=0)
  widths = {}
  for method, scores in (('few', few), ('many', many)):
    iqm = estimates[method]['IQM']
    assert iqm.point == pytest.approx(metrics.iqm(scores))
    assert iqm.lower <= iqm.point <= iqm.upper
    assert iqm.lower < iqm.upper
    widths[method] = iqm.upper - iqm.lower
  assert widths['many'] < 0.5 * widths['few']


def test_bootstrap_is_stratified_and_seeded():
  # One run per game: resampling runs within games cannot change anything.
  single = np.array([[0.1, 0.5, 0.9, 1.3]])
  estimate = metrics.iqm_with_ci(single, reps=200)
  assert estimate.lower == pytest.approx(estimate.point)
  assert estimate.upper == pytest.approx(estimate.point)
  scores = np.random.RandomState(1).rand(5, 4)
  assert metrics.iqm_with_ci(scores, reps=300, seed=3) == (
      metrics.iqm_with_ci(scores, reps=300, seed=3))
  # The caller's global RNG stream is left alone.
  np.random.seed(123)
  expected = np.random.rand()
  np.random.seed(123)
  metrics.iqm_with_ci(scores, reps=50, seed=9)
  assert np.random.rand() == expected


def test_iqm_curve():
  rng = np.random.RandomState(2)
  curves = rng.rand(4, 5, 6) + np.arange(6)  # improving over evaluations
  points, cis = metrics.iqm_curve(curves, reps=200)
  assert points.shape == (6,) and cis.shape == (2, 6)
  for i in range(6):
    assert points[i] == pytest.approx(metrics.iqm(curves[..., i]))
  assert np.all(cis[0] <= points + 1e-9) and np.all(points <= cis[1] + 1e-9)
  assert np.all(np.diff(points) > 0)


def test_performance_profiles_hand_computed():
  scores = np.array([[0.0, 0.5, 1.0, 2.0], [0.25, 0.75, 1.5, 3.0]])
  taus = np.array([-1.0, 0.0, 0.6, 1.0, 2.5, 10.0])
  taus_out, profiles, cis = metrics.performance_profiles(
      {'m': scores}, taus=taus, reps=100)
  np.testing.assert_array_equal(taus_out, taus)
  # Fraction of the 8 scores strictly above each tau.
  np.testing.assert_allclose(profiles['m'], [1.0, 7 / 8, 5 / 8, 3 / 8, 1 / 8, 0])
  assert cis['m'].shape == (2, len(taus))
  default_taus, _, _ = metrics.performance_profiles({'m': scores}, reps=20)
  assert default_taus[0] == 0.0 and default_taus[-1] >= 3.0


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match=r'\[num_runs, num_games\]'):
    metrics.iqm(np.ones(5))
  with pytest.raises(ValueError, match='NaN'):
    metrics.iqm(np.array([[1.0, np.nan]]))
  with pytest.raises(ValueError, match="scores of 'bad'"):
    metrics.interval_estimates({'bad': np.ones((0, 3))})
  with pytest.raises(ValueError, match='Unknown aggregates'):
    metrics.interval_estimates({'m': np.ones((2, 2))}, aggregates=('Max',))
