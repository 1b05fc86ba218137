"""CqlC51Agent: n-step targets, TF-Agents equivalence, CQL behaviour, numerics, distribution."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.categorical_dqn import categorical_dqn_agent

from tests.agents import helpers
from tf_offline_q.agents import cql_c51
from tf_offline_q.agents import losses


def _numpy_n_step(rewards, terminals, gamma, n):
  """Dopamine's rule: sum rewards up to and including the first terminal."""
  out = []
  for r, d in zip(rewards, terminals):
    length = n if not d[:n].any() else int(np.argmax(d[:n])) + 1
    ret = sum(gamma ** t * r[t] for t in range(length))
    out.append((ret, 0.0 if d[:n].any() else gamma ** n))
  return np.array(out)


def _numpy_projection(target_support, probs, support):
  """Algorithm 1 of Bellemare et al. (2017), with explicit floor / ceil."""
  v_min, v_max, n = support[0], support[-1], len(support)
  dz = (v_max - v_min) / (n - 1)
  out = np.zeros_like(probs)
  for b in range(len(probs)):
    for j in range(n):
      tz = np.clip(target_support[b, j], v_min, v_max)
      pos = (tz - v_min) / dz
      lo, hi = int(np.floor(pos)), int(np.ceil(pos))
      if lo == hi:
        out[b, lo] += probs[b, j]
      else:
        out[b, lo] += probs[b, j] * (hi - pos)
        out[b, hi] += probs[b, j] * (pos - lo)
  return out


def test_n_step_return_with_terminal_in_the_window_matches_numpy():
  rng = np.random.default_rng(1)
  rewards = rng.uniform(-1, 1, (5, 3)).astype(np.float32)
  terminals = np.zeros((5, 3), bool)
  terminals[1, 0] = terminals[2, 1] = terminals[3, 2] = True
  terminals[4, 0] = terminals[4, 2] = True
  g, boot = losses.n_step_return(tf.constant(rewards), tf.constant(1.0 - terminals, tf.float32),
                                 0.99)
  expected = _numpy_n_step(rewards, terminals, 0.99, 3)
  np.testing.assert_allclose(g, expected[:, 0], rtol=1e-6)
  np.testing.assert_allclose(boot, expected[:, 1], rtol=1e-6)
  assert float(boot[2]) == 0.0 and abs(float(g[2]) - (rewards[2, 0] + 0.99 * rewards[2, 1])) < 1e-6


def test_projection_matches_bellemare_algorithm_1():
  rng = np.random.default_rng(2)
  support = np.linspace(-10, 10, 51).astype(np.float32)
  probs = rng.dirichlet(np.ones(51), size=4).astype(np.float32)
  target_support = rng.uniform(-1, 1, (4, 1)) + rng.uniform(0, 1, (4, 1)) * support
  target_support[0] = 3 * support  # spills over both edges
  got = losses.project_distribution(tf.constant(target_support, tf.float32), tf.constant(probs),
                                    tf.constant(support))
  np.testing.assert_allclose(got, _numpy_projection(target_support, probs, support), atol=1e-5)
  np.testing.assert_allclose(tf.reduce_sum(got, -1), 1.0, rtol=1e-5)


def _agent_pair(double_dqn=False):
  net = helpers.micro_network('vit_ts', 'none')
  ours = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net, cql_alpha=0.0,
                             double_dqn=double_dqn)
  theirs = categorical_dqn_agent.CategoricalDqnAgent(
      helpers.TIME_STEP_SPEC, helpers.ACT, net, tf.keras.optimizers.Adam(1e-5),
      n_step_update=3, gamma=0.99, min_q_value=-10.0, max_q_value=10.0)
  ours.initialize()
  theirs.initialize()
  # Make the target networks different from the online one (as after training).
  for target in (ours._target_q_network, theirs._target_q_network):
    for v, w in zip(target.variables, net.variables):
      v.assign(w * 0.9 + 0.01)
  return net, ours, theirs


@pytest.mark.parametrize('terminal_at', [None, {0: 0, 1: 1, 2: 2, 4: 1}])
def test_alpha_zero_equals_tf_agents_categorical_dqn(terminal_at):
  net, ours, theirs = _agent_pair()
  experience = helpers.batch(6, terminal_at=terminal_at)
  with tf.GradientTape(persistent=True) as tape:
    our_loss = ours.loss(experience, training=True).loss
    # Called as CategoricalDqnAgent._train calls it: its public `loss()` would
    # fall back to the `_loss` default gamma=1.0.
    their_loss = theirs._loss(experience, gamma=theirs._gamma, training=True).loss
  np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
  our_grads = tape.gradient(our_loss, net.trainable_variables)
  their_grads = tape.gradient(their_loss, net.trainable_variables)
  for a, b, v in zip(our_grads, their_grads, net.trainable_variables):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=v.name)


def test_cql_term_adds_alpha_times_logsumexp_gap():
  net, ours, _ = _agent_pair()
  experience = helpers.batch(6, seed=3)
  base = ours.loss(experience)
  cql = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net, cql_alpha=0.5)
  cql._target_q_network.set_weights(ours._target_q_network.get_weights())
  info = cql.loss(experience)
  q = losses.expected_q(net(experience.observation[:, 0])[0], cql.support).numpy()
  a = experience.action[:, 0].numpy()
  gap = np.log(np.exp(q).sum(-1)) - q[np.arange(6), a]
  np.testing.assert_allclose(info.extra.cql_loss, gap.mean(), rtol=1e-5)
  np.testing.assert_allclose(info.loss, float(base.loss) + 0.5 * gap.mean(), rtol=1e-5)
  np.testing.assert_allclose(info.extra.td_loss, base.loss, rtol=1e-5)


def test_double_dqn_chooses_the_target_action_with_the_online_network():
  net, ours, _ = _agent_pair(double_dqn=True)
  experience = helpers.batch(6, seed=4)
  plain = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net, cql_alpha=0.0)
  plain._target_q_network.set_weights(ours._target_q_network.get_weights())
  assert not np.isclose(float(ours.loss(experience).loss), float(plain.loss(experience).loss))


def test_cql_pushes_unseen_actions_below_the_data_action():
  """A few hundred steps on 16 states whose dataset action is always 3."""
  experience = helpers.batch(16, seed=5, reward_scale=0.0)
  experience = experience._replace(action=tf.fill([16, 4], tf.constant(3, tf.int64)))
  gaps = {}
  for alpha in (0.0, 1.0):
    tf.keras.utils.set_random_seed(0)
    agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT,
                                helpers.micro_network('vit', 'mean'), cql_alpha=alpha,
                                learning_rate=1e-3, target_update_period=50)
    agent.initialize()
    train = tf.function(agent.train)
    for _ in range(200):
      train(experience)
    q = losses.expected_q(agent._q_network(experience.observation[:, 0])[0], agent.support)
    others = tf.concat([q[:, :3], q[:, 4:]], axis=1)
    gaps[alpha] = (q[:, 3] - tf.reduce_max(others, axis=1)).numpy()
  assert (gaps[1.0] > 0.05).all(), gaps[1.0]
  assert gaps[1.0].mean() > gaps[0.0].mean() + 0.05, gaps


def test_logsumexp_and_loss_stay_finite_at_the_support_edges():
  support = tf.linspace(-10.0, 10.0, 51)
  for edge in (0, 50):
    logits = tf.one_hot(tf.fill([4, 18], edge), 51) * 1e4       # all mass on one edge atom
    q = losses.expected_q(logits, support)
    term, lse, _ = losses.cql_regularizer(q, tf.zeros([4], tf.int64))
    assert np.isfinite(lse.numpy()).all() and np.isfinite(term.numpy()).all()
    np.testing.assert_allclose(lse, q[:, 0] + np.log(18.0), rtol=1e-5)
  net = helpers.micro_network('convnet', 'none')
  agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net)
  agent.initialize()
  out = net.layers[-1]
  out.bias.assign(tf.reshape(tf.one_hot(tf.fill([18], 50), 51) * 1e3, [-1]))
  with tf.GradientTape() as tape:
    info = agent.loss(helpers.batch(4, reward_scale=5.0))
  grads = tape.gradient(info.loss, net.trainable_variables)
  assert np.isfinite(float(info.loss)) and np.isfinite(float(info.extra.logsumexp_q))
  assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_loss_info_extra_reports_every_term():
  _, ours, _ = _agent_pair()
  info = tf.function(ours.train)(helpers.batch(4))
  extra = info.extra._asdict()
  assert set(extra) == {'td_loss', 'cql_loss', 'dr3_loss', 'q_data', 'logsumexp_q', 'q_mean',
                        'gradient_norm'}
  assert float(extra['gradient_norm']) > 0 and float(extra['logsumexp_q']) > float(
      extra['q_mean'])


def test_dr3_regularizer_and_gradient_clipping():
  net = helpers.micro_network('vit', 'mean')
  agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net, dr3_weight=1.0,
                              gradient_clipping=1e-3, optimizer=tf.keras.optimizers.SGD(1.0))
  agent.initialize()
  experience = helpers.batch(4)
  before = [v.numpy() for v in net.trainable_variables]
  info = agent.train(experience)
  phi = net.features(experience.observation[:, 0]).numpy()
  assert float(info.extra.dr3_loss) > 0 and float(info.extra.gradient_norm) > 1e-3
  step = np.sqrt(sum(((v.numpy() - b) ** 2).sum() for v, b in zip(net.trainable_variables,
                                                                  before)))
  np.testing.assert_allclose(step, 1e-3, rtol=1e-3)  # SGD(1.0) step = clipped gradient
  assert phi.shape == (4, 64)


def test_train_step_compiles_with_xla_and_updates_the_target_periodically():
  net = helpers.micro_network('vit_ts', 'mean')
  agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net, target_update_period=2,
                              learning_rate=1e-3)
  agent.initialize()
  train = tf.function(agent.train, jit_compile=True)
  experience = helpers.batch(4)
  target = agent._target_q_network
  for step in range(1, 5):
    train(experience)
    same = all(np.array_equal(a, b) for a, b in zip(net.get_weights(), target.get_weights()))
    assert same == (step % 2 == 0), step
  assert int(agent.train_step_counter) == 4


def test_one_step_under_mirrored_strategy_equals_the_default_strategy():
  experience = helpers.batch(8, seed=6, terminal_at={1: 1})
  results = {}
  for name, strategy in (('default', tf.distribute.get_strategy()),
                         ('mirrored', tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))):
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
      net = helpers.micro_network('vit', 'learned')
      agent = cql_c51.CqlC51Agent(helpers.TIME_STEP_SPEC, helpers.ACT, net,
                                  optimizer=tf.keras.optimizers.SGD(0.5),
                                  gradient_clipping=10.0)
      agent.initialize()
    dataset = tf.data.Dataset.from_tensors(experience).unbatch().batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    info = strategy.run(tf.function(agent.train), args=(batch,))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, info.loss, axis=None)
    norm = strategy.reduce(tf.distribute.ReduceOp.SUM, info.extra.gradient_norm, axis=None)
    results[name] = (float(loss), float(norm), [v.numpy() for v in net.trainable_variables])
  assert tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']).num_replicas_in_sync == 2
  np.testing.assert_allclose(results['mirrored'][0], results['default'][0], rtol=1e-5)
  np.testing.assert_allclose(results['mirrored'][1], results['default'][1], rtol=1e-4)
  for a, b in zip(results['mirrored'][2], results['default'][2]):
    np.testing.assert_allclose(a, b, atol=1e-5)
