"""QTransformerAgent: discretisation, per-dimension targets, MC bound, regulariser, decoding,
learning, policies in drivers and SavedModels, MirroredStrategy."""
import itertools
import os
import subprocess
import sys
import textwrap
import types

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.environments import random_py_environment
from tf_agents.metrics import py_metrics
from tf_agents.networks import network
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_offline_q.agents import discretization
from tf_offline_q.agents import q_transformer
from tf_offline_q.networks import action_transformer

DIMS, BINS = 3, 4
ACT = tensor_spec.BoundedTensorSpec([DIMS], tf.float32, -1.0, 1.0, name='action')
STATE = tensor_spec.TensorSpec([5], tf.float32, name='observation')
TINY_NET = dict(width=16, depth=1, num_heads=2, dropout=0.0, encoder_hidden=(16,))


class TableQNetwork(network.Network):
  """A Q-function given by a table, for exact references.

  The observation is `[B, 1]` holding a state id s; Q(s, a^{1:i-1}, k) =
  table[s, i, p, k] with p = sum_{j<i} a^j N^j the index of the prefix.
  """

  def __init__(self, table, name='TableQNetwork'):
    table = np.asarray(table, np.float32)
    super().__init__(input_tensor_spec=(
        tensor_spec.BoundedTensorSpec([1], tf.float32, 0, table.shape[0] - 1),
        tensor_spec.BoundedTensorSpec([table.shape[1]], tf.int32, 0, table.shape[3] - 1)),
                     state_spec=(), name=name)
    self._table = tf.constant(table)
    self.action_dims, self.num_bins = table.shape[1], table.shape[3]
    self._unused = tf.Variable(0.0)  # TF-Agents target copies need a variable

  def encode(self, observation, training=False):
    return observation

  def q_values(self, encoding, action_bins, training=False):
    state = tf.cast(encoding[:, 0], tf.int32)
    powers = self.num_bins ** np.arange(self.action_dims)
    prefix = tf.math.cumsum(action_bins * powers, axis=1, exclusive=True)      # [B, d]
    dims = tf.broadcast_to(tf.range(self.action_dims), tf.shape(prefix))
    index = tf.stack([tf.broadcast_to(state[:, None], tf.shape(prefix)), dims, prefix], -1)
    return tf.gather_nd(self._table, index) + 0.0 * self._unused

  def call(self, inputs, step_type=None, network_state=(), training=False):
    return self.q_values(self.encode(inputs[0]), inputs[1]), network_state


def _table_agent(table, **kwargs):
  spec = tf.TensorSpec([1], tf.float32, name='observation')
  agent = q_transformer.QTransformerAgent(ts.time_step_spec(spec), ACT, TableQNetwork(table),
                                          **kwargs)
  agent.initialize()
  return agent


def _numpy_bins(action, num_bins=BINS):
  return np.clip(np.floor((action + 1.0) / (2.0 / num_bins)), 0, num_bins - 1).astype(int)


def _prefix(bins, i, num_bins=BINS):
  return int(sum(bins[j] * num_bins ** j for j in range(i)))


def _episode_windows(rewards, n, gamma, num_states):
  """All n-step windows of one episode that ends with a terminal after its last step.

  State ids are the time steps 0 .. T-1; windows crossing the end are padded
  (reward 0, discount 0) and their next observation is a placeholder state.
  """
  length = len(rewards)
  rng = np.random.default_rng(7)
  window_rewards = np.zeros((length, n), np.float32)
  discounts = np.ones((length, n), np.float32)
  next_state = np.zeros(length, np.float32)
  for t in range(length):
    for k in range(n):
      if t + k < length:
        window_rewards[t, k] = rewards[t + k]
      if t + k >= length - 1:
        discounts[t, k] = 0.0  # the step at T-1 is terminal; padding after it
    next_state[t] = t + n if t + n < length else num_states - 1
  mc = np.array([sum(gamma ** k * rewards[t + k] for k in range(length - t))
                 for t in range(length)], np.float32)
  return {'observation': np.arange(length, dtype=np.float32)[:, None],
          'action': rng.uniform(-1, 1, (length, DIMS)).astype(np.float32),
          'rewards': window_rewards, 'discounts': discounts,
          'next_observation': next_state[:, None], 'mc_return': mc}


def _numpy_targets(table, batch, n, gamma):
  """Per-dimension Bellman targets, written out with loops."""
  out = []
  for b in range(len(batch['rewards'])):
    s, s_next = int(batch['observation'][b, 0]), int(batch['next_observation'][b, 0])
    bins = _numpy_bins(batch['action'][b])
    row = [table[s, i + 1, _prefix(bins, i + 1)].max() for i in range(DIMS - 1)]
    ret, alive = 0.0, True
    for k in range(n):
      ret += gamma ** k * batch['rewards'][b, k]
      if batch['discounts'][b, k] == 0:
        alive = False
        break
    row.append(ret + (gamma ** n * table[s_next, 0, 0].max() if alive else 0.0))
    out.append(row)
  return np.array(out)


def _tensors(batch):
  return {k: tf.constant(v) for k, v in batch.items()}


def test_discretization_round_trips_within_half_a_bin():
  spec = tensor_spec.BoundedTensorSpec([3], tf.float32, [-1.0, 0.0, -2.0], [1.0, 0.5, 6.0])
  disc = discretization.Discretizer(spec, 256)
  rng = np.random.default_rng(0)
  low, high = np.array([-1.0, 0.0, -2.0]), np.array([1.0, 0.5, 6.0])
  action = rng.uniform(low, high, (2000, 3)).astype(np.float32)
  action[:2] = [low, high]                                 # both edges
  bins = disc.to_bins(action).numpy()
  assert bins.min() >= 0 and bins.max() <= 255 and (bins[1] == 255).all() and (bins[0] == 0).all()
  width = (high - low) / 256
  assert (np.abs(disc.from_bins(bins).numpy() - action) <= width / 2 + 1e-6).all()
  every = np.tile(np.arange(256)[:, None], [1, 3])
  np.testing.assert_array_equal(disc.to_bins(disc.from_bins(every)), every)  # centres map back
  np.testing.assert_allclose(disc.centres()[:, 0], low + width / 2, rtol=1e-6)
  np.testing.assert_array_equal(disc.to_bins([[-5.0, 9.0, 6.0]]), [[0, 255, 255]])  # clipped
  with pytest.raises(ValueError, match='finite bounds'):
    discretization.Discretizer(tf.TensorSpec([2], tf.float32), 8)


@pytest.mark.parametrize('n', [1, 2])
def test_per_dimension_targets_match_numpy_across_time_steps_and_terminals(n):
  """Episode of 6 steps, reward 1 only at the last (terminal) step."""
  gamma = 0.9
  num_states = 8
  table = np.random.default_rng(n).uniform(0, 1, (num_states, DIMS, BINS ** (DIMS - 1), BINS))
  agent = _table_agent(table, n_step=n, gamma=gamma, use_mc_return=False)
  batch = _episode_windows(np.array([0, 0, 0, 0, 0, 1.0]), n, gamma, num_states)
  target, bellman = agent.targets(_tensors(batch))
  expected = _numpy_targets(table, batch, n, gamma)
  np.testing.assert_allclose(target, expected, rtol=1e-6)
  np.testing.assert_array_equal(target, bellman)
  # The last dimension at t links to the first dimension at t + n ...
  t = 1
  np.testing.assert_allclose(target[t, -1], gamma ** n * table[t + n, 0, 0].max(), rtol=1e-6)
  # ... and the terminal step backs up its reward only.
  assert float(target[5, -1]) == 1.0
  # Intermediate dimensions: the next dimension's max at the same state.
  bins = _numpy_bins(batch['action'][t])
  np.testing.assert_allclose(target[t, 0], table[t, 1, bins[0]].max(), rtol=1e-6)


def test_targets_come_from_the_target_network():
  agent = q_transformer.make_agent(ts.time_step_spec(STATE), ACT, n_step=1,
                                   network_kwargs=dict(TINY_NET, num_bins=BINS))
  agent.initialize()
  batch = _batch(6)
  before = agent.targets(batch)[0].numpy()
  for v in agent._q_network.trainable_variables:
    v.assign(v * 1.5 + 0.1)
  np.testing.assert_array_equal(agent.targets(batch)[0], before)
  for v in agent._target_q_network.trainable_variables:
    v.assign(v * 1.5 + 0.1)
  assert not np.allclose(agent.targets(batch)[0], before)


def test_mc_bound_raises_exactly_the_targets_below_the_return_to_go():
  table = np.random.default_rng(3).uniform(0.2, 0.8, (8, DIMS, BINS ** (DIMS - 1), BINS))
  batch = _episode_windows(np.array([0, 0, 0, 0, 0, 1.0]), 2, 0.9, 8)
  batch['mc_return'] = np.linspace(0.0, 1.0, 6).astype(np.float32)
  plain = _table_agent(table, n_step=2, gamma=0.9, use_mc_return=False)
  with_mc = _table_agent(table, n_step=2, gamma=0.9)
  bellman = plain.targets(_tensors(batch))[0].numpy()
  target, bellman_too = with_mc.targets(_tensors(batch))
  np.testing.assert_array_equal(bellman_too, bellman)
  below = bellman < batch['mc_return'][:, None]
  assert 0 < below.sum() < below.size
  np.testing.assert_array_equal(target.numpy()[below],
                                np.broadcast_to(batch['mc_return'][:, None], below.shape)[below])
  np.testing.assert_array_equal(target.numpy()[~below], bellman[~below])


def test_regularizer_touches_only_the_non_dataset_bins():
  q = tf.constant(np.random.default_rng(0).uniform(0, 1, (5, DIMS, BINS)), tf.float32)
  bins = tf.constant(np.random.default_rng(1).integers(0, BINS, (5, DIMS)), tf.int32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(q)
    mse = q_transformer.conservative_regularizer(q, bins, 'mse', 0.0)
    softmax = q_transformer.conservative_regularizer(q, bins, 'softmax')
  grad = tape.gradient(mse, q).numpy()
  data = tf.one_hot(bins, BINS).numpy().astype(bool)
  assert (grad[data] == 0).all()
  # d/dQ_k of 1/2 * mean_i 1/(N-1) sum_{k != a^i} Q_k^2 = Q_k / ((N-1) d_A).
  np.testing.assert_allclose(grad[~data], q.numpy()[~data] / ((BINS - 1) * DIMS), rtol=1e-5)
  expected = 0.5 * np.mean(np.sum(np.where(data, 0, q.numpy() ** 2), -1) / (BINS - 1), -1)
  np.testing.assert_allclose(mse, expected, rtol=1e-5)
  # The CQL-style ablation pushes the dataset bin up, the others down.
  soft = tape.gradient(softmax, q).numpy()
  assert (soft[data] < 0).all() and (soft[~data] > 0).all()
  with pytest.raises(ValueError, match='conservative_regularizer'):
    q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, _network(),
                                    conservative_regularizer='l1')


def _network(num_bins=BINS, obs_spec=STATE, **kwargs):
  return action_transformer.ActionTransformerQNetwork(obs_spec, ACT, num_bins=num_bins,
                                                      **dict(TINY_NET, **kwargs))


def test_greedy_decoding_equals_the_per_prefix_argmax_of_exhaustive_evaluation():
  """What is asserted: for a random (untrained, so not Bellman-consistent)
  network, `greedy_bins` returns a^i = argmax_k Q(s, a^{1:i-1}, k) with each
  prefix evaluated by teacher-forcing the network on all 4^3 bin combinations;
  the reported Q of each chosen prefix equals the table entry."""
  net = _network()
  obs = tf.constant(np.random.default_rng(4).normal(size=(6, 5)), tf.float32)
  bins, chosen_q = q_transformer.greedy_bins(net, obs)
  combos = np.array(list(itertools.product(range(BINS), repeat=DIMS)), np.int32)  # [64, 3]
  for b in range(6):
    encoding = tf.repeat(net.encode(obs[b:b + 1]), len(combos), axis=0)
    table = net.q_values(encoding, combos).numpy()                               # [64, 3, 4]
    prefix = []
    for i in range(DIMS):
      row = next(r for r, c in enumerate(combos) if list(c[:i]) == prefix)
      prefix.append(int(np.argmax(table[row, i])))
      np.testing.assert_allclose(chosen_q[b, i], table[row, i].max(), rtol=1e-5)
    assert list(bins[b].numpy()) == prefix


def test_greedy_decoding_finds_the_global_optimum_of_a_consistent_q_chain():
  """What is asserted: when Q_i(s, a^{1:i}) = max_k Q_{i+1}(s, a^{1:i}, k)
  (the fixed point of the per-dimension update), greedy decoding returns the
  argmax of Q_{d_A} over all 4^3 full actions, for every state."""
  rng = np.random.default_rng(5)
  num_states = 10
  full = rng.uniform(0, 1, (num_states,) + (BINS,) * DIMS)           # Q_d(s, a^1, a^2, a^3)
  table = np.zeros((num_states, DIMS, BINS ** (DIMS - 1), BINS))
  for s in range(num_states):
    for combo in itertools.product(range(BINS), repeat=DIMS):
      for i in range(DIMS):
        value = full[(s,) + combo[:i + 1]].max()                     # max over the completion
        table[s, i, _prefix(combo, i), combo[i]] = value
  net = TableQNetwork(table)
  bins, chosen_q = q_transformer.greedy_bins(net, np.arange(num_states, dtype=np.float32)[:, None])
  for s in range(num_states):
    best = np.unravel_index(np.argmax(full[s]), full[s].shape)
    assert tuple(bins[s].numpy()) == tuple(best)
    np.testing.assert_allclose(chosen_q[s], full[s].max(), rtol=1e-6)


def _batch(batch_size, seed=0, n=1):
  rng = np.random.default_rng(seed)
  return {'observation': tf.constant(rng.normal(size=(batch_size, 5)), tf.float32),
          'action': tf.constant(rng.uniform(-1, 1, (batch_size, DIMS)), tf.float32),
          'rewards': tf.constant(rng.integers(0, 2, (batch_size, n)), tf.float32),
          'discounts': tf.constant(rng.integers(0, 2, (batch_size, n)), tf.float32),
          'next_observation': tf.constant(rng.normal(size=(batch_size, 5)), tf.float32),
          'mc_return': tf.constant(rng.uniform(0, 1, batch_size), tf.float32)}


def test_training_moves_dataset_q_to_the_returns_and_other_bins_to_zero():
  """Four one-step episodes (terminal), one fixed action each; two succeed (reward 1)."""
  obs = np.eye(4, 5, dtype=np.float32)
  rewards = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
  action = np.random.default_rng(6).uniform(-1, 1, (4, DIMS)).astype(np.float32)
  batch = _tensors({'observation': obs, 'action': action, 'rewards': rewards[:, None],
                    'discounts': np.zeros((4, 1), np.float32), 'next_observation': obs,
                    'mc_return': rewards})
  agent = q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, _network(num_bins=8),
                                          n_step=1, learning_rate=3e-3, tau=0.1)
  agent.initialize()
  train = tf.function(agent.train)
  first = train(batch).extra
  for _ in range(120):
    info = train(batch).extra
  bins = agent.discretizer.to_bins(action)
  q_all = agent._q_network((batch['observation'], bins))[0].numpy()          # [4, 3, 8]
  q_data = np.take_along_axis(q_all, bins.numpy()[..., None], -1)[..., 0]   # [4, 3]
  np.testing.assert_allclose(q_data, np.repeat(rewards[:, None], DIMS, 1), atol=0.15)
  others = np.where(tf.one_hot(bins, 8).numpy().astype(bool), np.nan, q_all)
  assert abs(float(first.q_other) - 0.5) < 0.2 and np.nanmax(others) < 0.15
  assert float(info.td_loss) < float(first.td_loss) / 5
  # The greedy policy picks the dataset action's bins in the successful states.
  action_out = agent.policy.action(ts.restart(batch['observation'], batch_size=4)).action.numpy()
  np.testing.assert_allclose(action_out[[0, 2]], agent.discretizer.from_bins(bins).numpy()[[0, 2]])


def test_target_network_follows_with_ema_tau_and_loss_info_has_every_term():
  agent = q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, _network(), n_step=1,
                                          tau=0.25, optimizer=tf.keras.optimizers.SGD(0.5))
  agent.initialize()
  old_target = [v.numpy() for v in agent._target_q_network.variables]
  info = agent.train(_batch(4))
  for new, old, online in zip(agent._target_q_network.variables, old_target,
                              agent._q_network.variables):
    np.testing.assert_allclose(new, 0.25 * online.numpy() + 0.75 * old, atol=1e-6)
  assert set(info.extra._asdict()) == {'td_loss', 'conservative_loss', 'q_data', 'q_other',
                                       'target', 'mc_raised', 'gradient_norm'}
  assert float(info.extra.gradient_norm) > 0
  np.testing.assert_allclose(info.loss, info.extra.td_loss + info.extra.conservative_loss,
                             rtol=1e-5)


def test_bad_batches_are_clear_errors():
  agent = q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, _network(), n_step=2)
  batch = _batch(3, n=2)
  with pytest.raises(ValueError, match='mc_return'):
    agent.loss({k: v for k, v in batch.items() if k != 'mc_return'})
  with pytest.raises(ValueError, match=r"batch\['rewards'\].*n_step=2"):
    agent.loss(dict(batch, rewards=batch['rewards'][:, :1]))
  with pytest.raises(ValueError, match='action dimensions'):
    q_transformer.QTransformerAgent(
        ts.time_step_spec(STATE), tensor_spec.BoundedTensorSpec([2], tf.float32, -1, 1),
        _network())


def _env(seed=0):
  return random_py_environment.RandomPyEnvironment(
      tensor_spec.to_array_spec(STATE), tensor_spec.to_array_spec(ACT),
      episode_end_probability=0.2, seed=seed)


def test_policy_runs_in_a_py_driver_and_saved_policy_acts_the_same(tmp_path):
  agent = q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, _network())
  agent.initialize()
  episodes = py_metrics.NumberOfEpisodes()
  env = _env()
  policy = py_tf_eager_policy.PyTFEagerPolicy(agent.policy, use_tf_function=True)
  py_driver.PyDriver(env, policy, [episodes], max_episodes=3).run(env.reset())
  assert episodes.result() == 3
  path = str(tmp_path / 'policy')
  policy_saver.PolicySaver(agent.policy, batch_size=None).save(path)
  obs = np.random.default_rng(8).normal(size=(4, 5)).astype(np.float32)
  np.save(tmp_path / 'obs.npy', obs)
  expected = agent.policy.action(ts.restart(tf.constant(obs), batch_size=4)).action.numpy()
  centres = agent.discretizer.centres().numpy()
  assert all(np.isin(expected[:, j], centres[j]).all() for j in range(DIMS))
  script = textwrap.dedent(f'''
      import sys
      import numpy as np
      import tensorflow as tf
      from tf_agents.trajectories import time_step as ts
      policy = tf.saved_model.load({path!r})
      obs = tf.constant(np.load({str(tmp_path / 'obs.npy')!r}))
      print(policy.action(ts.restart(obs, batch_size=4)).action.numpy().tolist())
      assert not any(m.startswith('tf_offline_q') for m in sys.modules), 'imported tf_offline_q'
  ''')
  env_vars = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                       cwd=str(tmp_path), env=env_vars, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == str(expected.tolist())


def test_one_step_under_mirrored_strategy_equals_the_default_strategy():
  batch = _batch(8, seed=9, n=2)
  results = {}
  for name, strategy in (('default', tf.distribute.get_strategy()),
                         ('mirrored', tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))):
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
      net = _network()
      agent = q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, net, n_step=2,
                                              optimizer=tf.keras.optimizers.SGD(0.5),
                                              gradient_clipping=10.0)
      agent.initialize()
    dataset = tf.data.Dataset.from_tensors(batch).unbatch().batch(8)
    data = next(iter(strategy.experimental_distribute_dataset(dataset)))
    info = strategy.run(tf.function(agent.train), args=(data,))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, info.loss, axis=None)
    norm = strategy.reduce(tf.distribute.ReduceOp.SUM, info.extra.gradient_norm, axis=None)
    results[name] = (float(loss), float(norm), [v.numpy() for v in net.trainable_variables],
                     [v.numpy() for v in agent._target_q_network.trainable_variables])
  np.testing.assert_allclose(results['mirrored'][0], results['default'][0], rtol=1e-5)
  np.testing.assert_allclose(results['mirrored'][1], results['default'][1], rtol=1e-4)
  for a, b in zip(results['mirrored'][2] + results['mirrored'][3],
                  results['default'][2] + results['default'][3]):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_reverb_trajectory_windows_convert_to_n_step_batches():
  """Windows of K = n steps ending at t (reverb_windows' items) start at u = t - n + 1."""
  from tf_offline_q.data import reverb_windows  # pylint: disable=g-import-not-at-top
  n, gamma, length = 2, 0.9, 5
  rng = np.random.default_rng(10)
  episode = types.SimpleNamespace(
      observations=rng.normal(size=(length + 1, 5)).astype(np.float32),
      actions=rng.uniform(-1, 1, (length, DIMS)).astype(np.float32),
      rewards=np.array([0, 0, 0, 0, 1], np.float32),
      terminations=np.array([0, 0, 0, 0, 1], bool), truncations=np.zeros(length, bool))
  layout = reverb_windows.WindowLayout(n, 5, DIMS, next_observation=True, gamma=gamma)
  refs = [reverb_windows.reference_window(episode, t, layout) for t in range(length)]
  window = reverb_windows.Window(**{f: tf.constant(np.stack([r[f] for r in refs]))
                                    for f in reverb_windows.Window._fields})
  batch, weights = q_transformer.batch_from_window(window, position=tf.zeros([length], tf.int32))
  np.testing.assert_array_equal(weights, [0, 1, 1, 1, 1])   # t = 0: padded start
  for t in range(1, length):
    u = t - n + 1
    np.testing.assert_array_equal(batch['observation'][t], episode.observations[u])
    np.testing.assert_array_equal(batch['action'][t], episode.actions[u])
    np.testing.assert_array_equal(batch['rewards'][t], episode.rewards[u:u + n])
    np.testing.assert_array_equal(batch['discounts'][t], 1.0 - episode.terminations[u:u + n])
    np.testing.assert_array_equal(batch['next_observation'][t], episode.observations[u + n])
    np.testing.assert_allclose(batch['mc_return'][t], gamma ** (length - 1 - u), rtol=1e-6)
  agent = q_transformer.QTransformerAgent(ts.time_step_spec(STATE), ACT, _network(), n_step=n,
                                          gamma=gamma)
  agent.initialize()
  assert np.isfinite(float(agent.train(batch, weights).loss))


def test_the_last_steps_of_a_terminated_episode_are_trained_with_cut_returns():
  """Steps T-n+1 .. T-1 start no window: the terminal window trains them (position j)."""
  from tf_offline_q.data import reverb_windows  # pylint: disable=g-import-not-at-top
  n, gamma, length = 3, 0.9, 6
  rng = np.random.default_rng(11)
  rewards = np.array([0, 0, 0, 0, 0, 1], np.float32)
  episode = types.SimpleNamespace(
      observations=rng.normal(size=(length + 1, 5)).astype(np.float32),
      actions=rng.uniform(-1, 1, (length, DIMS)).astype(np.float32), rewards=rewards,
      terminations=rewards.astype(bool), truncations=np.zeros(length, bool))
  layout = reverb_windows.WindowLayout(n, 5, DIMS, next_observation=True, gamma=gamma)
  ref = reverb_windows.reference_window(episode, length - 1, layout)      # the terminal window
  window = reverb_windows.Window(**{f: tf.constant(np.stack([ref[f]] * n))
                                    for f in reverb_windows.Window._fields})
  batch, weights = q_transformer.batch_from_window(window, position=tf.range(n))
  np.testing.assert_array_equal(weights, [1, 1, 1])
  for j in range(n):
    u = length - n + j
    np.testing.assert_array_equal(batch['observation'][j], episode.observations[u])
    np.testing.assert_array_equal(batch['action'][j], episode.actions[u])
    np.testing.assert_array_equal(batch['rewards'][j], np.pad(rewards[u:], (0, j)))
    np.testing.assert_array_equal(batch['discounts'][j],
                                  np.pad(1.0 - episode.terminations[u:], (0, j),
                                         constant_values=1.0))
    np.testing.assert_allclose(batch['mc_return'][j], gamma ** (length - 1 - u), rtol=1e-6)
  # Per-dimension targets of the last dimension: the cut n-step return, no bootstrap.
  agent = _table_agent(np.full((1, DIMS, BINS ** DIMS, BINS), 0.7, np.float32), n_step=n,
                       gamma=gamma, use_mc_return=False)
  table_batch = dict(batch, observation=tf.zeros([n, 1]), next_observation=tf.zeros([n, 1]))
  _, bellman = agent.targets(table_batch)
  np.testing.assert_allclose(bellman[:, -1], [gamma ** 2, gamma, 1.0], rtol=1e-6)
  # Default: position 0, except in terminated windows (uniform, weight n).
  tf.random.set_seed(0)
  drawn = set()
  for _ in range(30):
    batch, weights = q_transformer.batch_from_window(window)
    np.testing.assert_array_equal(weights, [n] * n)
    drawn |= {int(np.flatnonzero((episode.actions == a).all(1))[0]) for a in batch['action'].numpy()}
  assert drawn == {length - 3, length - 2, length - 1}
  ref = reverb_windows.reference_window(episode, length - 2, layout)      # not terminal
  window = reverb_windows.Window(**{f: tf.constant(np.stack([ref[f]])) for f in
                                    reverb_windows.Window._fields})
  batch, weights = q_transformer.batch_from_window(window)
  np.testing.assert_array_equal(weights, [1])
  np.testing.assert_array_equal(batch['action'][0], episode.actions[length - 4])


@pytest.mark.parametrize('name,changed', [
    ('q_transformer.gin', {}),
    ('q_transformer_no_conservative.gin', {'_cql_alpha': 0.0}),
    ('q_transformer_softmax.gin', {'_conservative_regularizer': 'softmax'}),
    ('q_transformer_no_mc.gin', {'_use_mc_return': False}),
    ('q_transformer_one_step.gin', {'_n_step': 1})])
def test_gin_files_build_the_agent_and_its_ablations(name, changed):
  gin_dir = os.path.join(os.path.dirname(__file__), '..', '..', 'gin')
  gin.clear_config()
  gin.add_config_file_search_path(gin_dir)
  try:
    gin.parse_config_files_and_bindings([os.path.join(gin_dir, name)], [], skip_unknown=True)
    agent = q_transformer.make_agent(ts.time_step_spec(STATE), ACT,
                                     network_kwargs=dict(width=16, num_heads=2, depth=1))
  finally:
    gin.clear_config()
  expected = dict({'_cql_alpha': 1.0, '_conservative_regularizer': 'mse', '_use_mc_return': True,
                   '_n_step': 3, '_gamma': 0.98, '_tau': 0.005, '_target_update_period': 1},
                  **changed)
  assert {k: getattr(agent, k) for k in expected} == expected
  assert agent._q_network.num_bins == 256 and agent.discretizer.num_bins == 256
  assert float(agent._optimizer.learning_rate) == pytest.approx(3e-4)
