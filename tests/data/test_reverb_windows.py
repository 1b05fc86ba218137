"""Reverb windows: sampled windows equal a numpy reference; bad episodes fail clearly."""
from typing import Any, NamedTuple

import numpy as np
import pytest
import tensorflow as tf

from tf_offline_q.data import reverb_windows as rw

OBS_DIM, ACT_DIM = 3, 2


class Episode(NamedTuple):
  """The `minari_data.ContinuousEpisode` shape, with an id for error messages."""
  observations: Any
  actions: Any
  rewards: Any
  terminations: Any
  truncations: Any
  episode_id: int = 0


def make_episode(episode_id, length, terminal, rng):
  """observation[t, 0] codes (episode, t), so a sample tells where it came from."""
  obs = rng.normal(size=(length + 1, OBS_DIM)).astype(np.float32)
  obs[:, 0] = episode_id * 1000 + np.arange(length + 1)
  act = rng.uniform(-1, 1, size=(length, ACT_DIM)).astype(np.float32)
  rew = rng.normal(size=length).astype(np.float32)
  term = np.zeros(length, bool)
  trunc = np.zeros(length, bool)
  (term if terminal else trunc)[-1] = True
  return Episode(obs, act, rew, term, trunc, episode_id)


def episodes(lengths, seed=0):
  rng = np.random.default_rng(seed)
  return [make_episode(i, n, i % 2 == 0, rng) for i, n in enumerate(lengths)]


def _sample_and_compare(layout, eps, batches=40, batch_size=32):
  server = rw.WindowServer({'T': layout})
  try:
    stats = server.fill('T', eps)
    assert stats.items == server.num_items('T') == sum(len(e.actions) for e in eps)
    ds = rw.make_window_dataset(server.address, 'T', layout, batch_size)
    kinds = {'start': 0, 'end': 0, 'middle': 0}
    seen = set()
    for window in ds.take(batches).as_numpy_iterator():
      assert window.observation.shape == (batch_size, layout.context_length, OBS_DIM)
      for b in range(batch_size):
        code = int(round(window.observation[b, -1, 0]))
        e, t = divmod(code, 1000)
        seen.add((e, t))
        ref = rw.reference_window(eps[e], t, layout)
        for name, want in ref.items():
          got = getattr(window, name)[b]
          np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5,
                                     err_msg=f'{name} of episode {e} step {t}')
        length = len(eps[e].actions)
        if t < layout.context_length - 1:
          kinds['start'] += 1
        elif t == length - 1:
          kinds['end'] += 1
        else:
          kinds['middle'] += 1
    assert min(kinds.values()) > 0, kinds
    assert len(seen) > 0.8 * stats.items
  finally:
    server.stop()


def test_windows_equal_numpy_reference_with_extras():
  layout = rw.WindowLayout(5, OBS_DIM, ACT_DIM, next_observation=True, gamma=0.9)
  _sample_and_compare(layout, episodes([7, 1, 3, 12, 5, 9, 2, 20]))


def test_windows_equal_numpy_reference_plain_layout():
  layout = rw.WindowLayout(4, OBS_DIM, ACT_DIM)
  eps = episodes([6, 11, 2, 8, 4], seed=1)
  _sample_and_compare(layout, eps, batches=20)
  spec = rw.window_spec(layout)
  assert spec.next_observation == () and spec.discounted_return_to_go == ()


def test_returns_to_go():
  r = np.array([1.0, 2.0, 3.0], np.float32)
  np.testing.assert_allclose(rw.returns_to_go(r), [6, 5, 3])
  np.testing.assert_allclose(rw.returns_to_go(r, 0.5), [1 + 0.5 * 2 + 0.25 * 3, 2 + 1.5, 3])


def test_distributed_per_replica_batches():
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  layout = rw.WindowLayout(3, OBS_DIM, ACT_DIM, next_observation=True)
  server = rw.WindowServer({'T': layout})
  try:
    server.fill('T', episodes([5, 6, 7]))
    ds = rw.make_distributed_window_dataset(strategy, server.address, 'T', layout, 8)
    window = next(iter(ds))
    parts = strategy.experimental_local_results(window.observation)
    assert [tuple(p.shape) for p in parts] == [(4, 3, OBS_DIM)] * 2
    assert tuple(strategy.experimental_local_results(window.next_observation)[0].shape) == (
        4, OBS_DIM)
  finally:
    server.stop()


def test_checkpoint_restore_and_layout_check(tmp_path):
  layout = rw.WindowLayout(3, OBS_DIM, ACT_DIM)
  server = rw.WindowServer({'T': layout}, checkpoint_dir=str(tmp_path))
  server.fill('T', episodes([5, 4]))
  server.checkpoint()
  server.stop()
  server = rw.WindowServer({'T': layout}, checkpoint_dir=str(tmp_path))
  try:
    assert server.is_filled('T') and server.num_items('T') == 9
  finally:
    server.stop()
  with pytest.raises(ValueError, match='restored from'):
    rw.WindowServer({'T': rw.WindowLayout(4, OBS_DIM, ACT_DIM)}, checkpoint_dir=str(tmp_path))


def test_bad_episodes_fail_clearly():
  layout = rw.WindowLayout(4, OBS_DIM, ACT_DIM)
  rng = np.random.default_rng(0)
  good = make_episode(7, 6, True, rng)
  server = rw.WindowServer({'T': layout})
  try:
    bad_obs = good.observations.copy()
    bad_obs[2, 1] = np.nan
    with pytest.raises(rw.DataError, match='episode 7.*observations.*NaN'):
      server.fill('T', [good._replace(observations=bad_obs)])
    with pytest.raises(rw.DataError, match='episode 7.*wrong action dimension'):
      server.fill('T', [good._replace(actions=np.zeros((6, 5), np.float32))])
    with pytest.raises(rw.DataError, match='episode 7.*rewards.*infinite'):
      server.fill('T', [good._replace(rewards=np.full(6, np.inf, np.float32))])
    term = np.zeros(6, bool)
    term[2] = True
    with pytest.raises(rw.DataError, match='termination'):
      server.fill('T', [good._replace(terminations=term)])
    short = make_episode(3, 2, False, rng)
    with pytest.raises(rw.DataError, match='T, episode 3: .*fewer than the window of 4'):
      server.fill('T', [short], short_episodes='error')
    with pytest.raises(rw.DataError, match='No window'):
      server.fill('T', [short], short_episodes='skip')
    assert not server.is_filled('T')
    server.fill('T', [short, good], short_episodes='skip')
    assert server.num_items('T') == 6
  finally:
    server.stop()
