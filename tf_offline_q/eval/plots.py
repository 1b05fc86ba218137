"""PNG figures of the paper's kinds (Figures 2-4), with matplotlib's Agg canvas.

  plot_learning_curves       IQM of DQN-normalised scores per evaluation, one
                             line per method, 95% CI band
  plot_performance_profiles  fraction of runs x games scoring above tau
  plot_aggregate_estimates   final IQM per method, bar with 95% CI

No pyplot: figures are `matplotlib.figure.Figure` objects drawn by the Agg
canvas, so this works headless and leaves global matplotlib state alone.
Every file is written to a temporary path and renamed.
"""
import os
import tempfile
from typing import Dict, Mapping, Optional, Sequence, Tuple

from matplotlib.backends import backend_agg
from matplotlib import figure as mpl_figure
import numpy as np

SCORE_LABEL = 'DQN-normalised score'


def method_colors(methods: Sequence[str]) -> Dict[str, str]:
  """A stable color per method (tab10, cycled), in the given order."""
  palette = [f'tab:{c}' for c in ('blue', 'orange', 'green', 'red', 'purple',
                                  'brown', 'pink', 'gray', 'olive', 'cyan')]
  return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def _new_figure(figsize=(7.0, 4.5)) -> mpl_figure.Figure:
  fig = mpl_figure.Figure(figsize=figsize, dpi=110)
  backend_agg.FigureCanvasAgg(fig)
  return fig


def save_figure(fig: mpl_figure.Figure, path: str) -> str:
  """Saves `fig` as PNG at `path` atomically (temp file + rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.plot.', suffix='.png')
  os.close(fd)
  try:
    fig.savefig(tmp, format='png', bbox_inches='tight')
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the figure owner-only.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def _style(ax, xlabel: str, ylabel: str, title: Optional[str]):
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(True, alpha=0.3)
  for side in ('top', 'right'):
    ax.spines[side].set_visible(False)


def plot_learning_curves(
    curves: Mapping[str, Tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: str,
    title: Optional[str] = None,
    xlabel: str = 'Training steps',
    ylabel: str = f'IQM {SCORE_LABEL}',
    reference: Optional[float] = 1.0,
    reference_label: str = 'DQN-Replay',
    random_label: Optional[str] = 'random play') -> str:
  """IQM learning curves with CI bands.

  Args:
    curves: {method: (steps `[T]`, iqm `[T]`, ci `[2, T]`)}.
    path: PNG output.
    reference: draw a dotted line at this score (1.0 = DQN-Replay, or the
      dataset's average for reference-score files); None: no.
    reference_label: the legend of that line.
    random_label: legend of a dashed line at 0 (random play); None: no line.
  """
  if not curves:
    raise ValueError('plot_learning_curves: no curves to plot')
  fig = _new_figure()
  ax = fig.subplots()
  colors = method_colors(list(curves))
  for method, (steps, points, ci) in curves.items():
    steps, points, ci = np.asarray(steps), np.asarray(points), np.asarray(ci)
    if steps.shape != points.shape or ci.shape != (2,) + points.shape:
      raise ValueError(
          f'curve of {method!r}: steps {steps.shape}, iqm {points.shape} and '
          f'ci {ci.shape} do not match ([T], [T], [2, T])')
    ax.plot(steps, points, marker='o', markersize=3, color=colors[method],
            label=method, linewidth=2)
    ax.fill_between(steps, ci[0], ci[1], color=colors[method], alpha=0.2)
  if reference is not None:
    ax.axhline(reference, color='black', linestyle=':', linewidth=1,
               label=reference_label)
  if random_label is not None:
    ax.axhline(0.0, color='grey', linestyle='--', linewidth=1, label=random_label)
  _style(ax, xlabel, ylabel, title)
  ax.legend(loc='best', fontsize='small')
  return save_figure(fig, path)


def plot_performance_profiles(
    taus: np.ndarray,
    profiles: Mapping[str, np.ndarray],
    profile_cis: Mapping[str, np.ndarray],
    path: str,
    title: Optional[str] = None,
    xlabel: str = f'{SCORE_LABEL} ($\\tau$)',
    ylabel: str = 'Fraction of runs with score > $\\tau$') -> str:
  """Performance profiles (score distributions) with CI bands.

  Args:
    taus: thresholds `[T]`.
    profiles: {method: `[T]`}.
    profile_cis: {method: `[2, T]`}.
  """
  if not profiles:
    raise ValueError('plot_performance_profiles: no profiles to plot')
  fig = _new_figure()
  ax = fig.subplots()
  colors = method_colors(list(profiles))
  for method, profile in profiles.items():
    ax.plot(taus, profile, color=colors[method], label=method, linewidth=2)
    if method in profile_cis:
      ci = np.asarray(profile_cis[method])
      ax.fill_between(taus, ci[0], ci[1], color=colors[method], alpha=0.2)
  ax.axvline(1.0, color='black', linestyle=':', linewidth=1)
  ax.set_ylim(-0.02, 1.02)
  _style(ax, xlabel, ylabel, title)
  ax.legend(loc='best', fontsize='small')
  return save_figure(fig, path)


def plot_aggregate_estimates(
    estimates: Mapping[str, Tuple[float, float, float]],
    path: str,
    title: Optional[str] = None,
    xlabel: str = f'IQM {SCORE_LABEL}') -> str:
  """One horizontal bar per method: point estimate with its CI.

  Args:
    estimates: {method: (point, lower, upper)}, e.g. `metrics.Estimate`s.
  """
  if not estimates:
    raise ValueError('plot_aggregate_estimates: no estimates to plot')
  methods = list(estimates)
  colors = method_colors(methods)
  fig = _new_figure(figsize=(7.0, 0.6 * len(methods) + 1.5))
  ax = fig.subplots()
  y = np.arange(len(methods))
  points = np.array([estimates[m][0] for m in methods], dtype=np.float64)
  lower = np.array([estimates[m][1] for m in methods], dtype=np.float64)
  upper = np.array([estimates[m][2] for m in methods], dtype=np.float64)
  ax.barh(y, points, color=[colors[m] for m in methods], alpha=0.75,
          xerr=np.stack([points - lower, upper - points]), capsize=4)
  for i, p in enumerate(points):
    ax.text(max(upper[i], p), i, f'  {p:.2f}', va='center', fontsize='small')
  ax.set_yticks(y)
  ax.set_yticklabels(methods)
  ax.invert_yaxis()
  ax.axvline(1.0, color='black', linestyle=':', linewidth=1)
  _style(ax, xlabel, '', title)
  return save_figure(fig, path)
