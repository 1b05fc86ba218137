"""QT: n-step targets against numpy, target / EMA networks, eta = 0 is the DT,
candidate selection, MirroredStrategy, PyDriver and PolicySaver."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

from tests.agents.test_decision_transformer import ACT_DIM, K, OBS_DIM, _play, specs
from tf_offline_q.agents import decision_transformer as dt
from tf_offline_q.agents import qt
from tf_offline_q.data import reverb_windows as rw
from tf_offline_q.networks import critics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GAMMA = 0.9


def make_network(dropout=0.0, **kwargs):
  time_step_spec, action_spec = specs()
  args = dict(context_length=K, width=16, depth=1, num_heads=2, dropout=dropout,
              max_timestep=50, return_scale=10.0,
              observation_mean=np.array([0.1, -0.2, 0.3]),
              observation_std=np.array([1.5, 0.5, 2.0]))
  args.update(kwargs)
  return dt.DecisionTransformerNetwork(time_step_spec.observation, action_spec, **args)


def make_agent(network=None, **kwargs):
  time_step_spec, action_spec = specs()
  critic = critics.TwinCriticNetwork(time_step_spec.observation, action_spec,
                                     hidden_units=(16, 16))
  args = dict(target_return=5.0, gamma=GAMMA, eta=1.0, num_candidates=5,
              candidate_spread=0.5, learning_rate=1e-3, critic_learning_rate=1e-3)
  args.update(kwargs)
  return qt.QtAgent(time_step_spec, action_spec, network or make_network(), critic, **args)


def make_window(batch=6, seed=0):
  """Windows with left padding (row 0 unpadded) and terminations at the
  last step of rows 1 and 3."""
  rng = np.random.default_rng(seed)
  starts = rng.integers(0, K, size=batch)
  starts[0] = 0
  mask = np.arange(K)[None] >= starts[:, None]
  discount = np.ones((batch, K), np.float32)
  discount[[1, 3], -1] = 0.0
  reward = rng.normal(size=(batch, K)).astype(np.float32) * mask
  obs = rng.normal(size=(batch, K, OBS_DIM)) * mask[..., None]
  return rw.Window(
      observation=tf.constant(obs, tf.float32),
      action=tf.constant(rng.uniform(-1, 1, size=(batch, K, ACT_DIM)) * mask[..., None],
                         tf.float32),
      reward=tf.constant(reward), discount=tf.constant(discount),
      return_to_go=tf.constant(rng.normal(size=(batch, K)) * 10 * mask, tf.float32),
      timestep=tf.constant(rng.integers(5, 40, size=(batch, K)) * mask, tf.int32),
      mask=tf.constant(mask), terminated=tf.constant(discount[:, -1] == 0),
      next_observation=tf.constant(rng.normal(size=(batch, OBS_DIM)), tf.float32))


def numpy_targets(reward, discount, next_q, gamma, n_step):
  batch, k = reward.shape
  out = np.zeros((batch, k))
  for b in range(batch):
    for j in range(k):
      n = k - j if n_step is None else min(n_step, k - j)
      total, scale = 0.0, 1.0
      for i in range(j, j + n):
        total += scale * reward[b, i]
        scale *= gamma * discount[b, i]
      out[b, j] = total + scale * next_q[b, j + n - 1]
  return out


@pytest.mark.parametrize('n_step', [None, 1, 2])
def test_n_step_targets_equal_numpy(n_step):
  window = make_window(batch=8, seed=1)
  next_q = np.random.default_rng(2).normal(size=(8, K)).astype(np.float32)
  got = qt.n_step_targets(window.reward, window.discount, tf.constant(next_q), GAMMA, n_step)
  want = numpy_targets(window.reward.numpy(), window.discount.numpy(), next_q, GAMMA, n_step)
  np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
  if n_step is None:
    # Terminated rows (1, 3) are pure reward sums; row 0's first step reaches
    # the bootstrap at gamma^K.
    reward = window.reward.numpy()
    for b in (1, 3):
      want_b = [sum(GAMMA ** (i - j) * reward[b, i] for i in range(j, K)) for j in range(K)]
      np.testing.assert_allclose(got.numpy()[b], want_b, rtol=1e-5, atol=1e-5)
    boot = got.numpy()[0, 0] - sum(GAMMA ** i * reward[0, i] for i in range(K))
    assert boot == pytest.approx(GAMMA ** K * next_q[0, -1], rel=1e-4)


def test_critic_target_uses_target_critics_and_ema_policy_only():
  agent = make_agent()
  window = make_window()
  before = agent.critic_targets(window).numpy()

  def shake(variables, scale=0.5):
    for v in variables:
      if v.trainable:
        v.assign_add(scale * tf.random.normal(v.shape))

  shake(agent.critic_network.variables)
  shake(agent.network.variables)
  np.testing.assert_allclose(agent.critic_targets(window).numpy(), before, rtol=1e-6)
  shake(agent.ema_network.variables)
  after_ema = agent.critic_targets(window).numpy()
  assert np.abs(after_ema - before).max() > 1e-4
  shake(agent.target_critic_network.variables)
  after_target = agent.critic_targets(window).numpy()
  assert np.abs(after_target - after_ema).max() > 1e-4
  # Terminated windows do not bootstrap: the next observation does not matter.
  moved = window._replace(next_observation=window.next_observation + 3.0)
  changed = np.abs(agent.critic_targets(moved).numpy() - after_target).max(axis=1)
  assert changed[1] == 0 and changed[3] == 0 and changed[0] > 1e-5
  # And the target is n_step_targets of min(Q1', Q2') at the EMA policy's actions.
  following = qt.next_step_input(window)
  next_action = agent.ema_network(following)[0]
  next_q = tf.reduce_min(agent.target_critic_network(
      (qt.normalized_observation(agent.network, following.observation), next_action))[0], -1)
  want = numpy_targets(window.reward.numpy(), window.discount.numpy(), next_q.numpy(),
                       GAMMA, None)
  np.testing.assert_allclose(after_target, want, rtol=1e-5, atol=1e-5)


def test_next_step_input_shifts_the_context():
  window = make_window()
  following = qt.next_step_input(window)
  np.testing.assert_array_equal(following.observation[:, :-1], window.observation[:, 1:])
  np.testing.assert_array_equal(following.observation[:, -1], window.next_observation)
  np.testing.assert_allclose(following.return_to_go[:, -1],
                             window.return_to_go[:, -1] - window.reward[:, -1])
  np.testing.assert_array_equal(following.timestep[:, -1], window.timestep[:, -1] + 1)
  assert following.mask.numpy()[:, -1].all()


def test_eta_zero_policy_update_equals_the_decision_transformers():
  time_step_spec, action_spec = specs()
  agent = make_agent(eta=0.0, learning_rate=3e-3, warmup_steps=0, gradient_clipping=0.5)
  dt_network = make_network()
  dt_agent = dt.DecisionTransformerAgent(time_step_spec, action_spec, dt_network,
                                         target_return=5.0, learning_rate=3e-3,
                                         weight_decay=1e-4, warmup_steps=0,
                                         gradient_clipping=0.5)
  for mine, theirs in zip(agent.network.variables, dt_network.variables):
    theirs.assign(mine)
  window = make_window(batch=8)
  for _ in range(3):
    info = agent.train(window)
    dt_info = dt_agent.train(window)
    assert float(info.extra.dt_loss) == pytest.approx(float(dt_info.loss), rel=1e-5)
    assert float(info.extra.actor_gradient_norm) == pytest.approx(
        float(dt_info.extra.gradient_norm), rel=1e-4)
  for mine, theirs in zip(agent.network.variables, dt_network.variables):
    np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_loss_info_terms():
  agent = make_agent(eta=2.0)
  window = make_window()
  info = agent.loss(window)
  extra = info.extra
  assert float(extra.actor_loss) == pytest.approx(
      float(extra.dt_loss) + 2.0 * float(extra.q_term), rel=1e-5)
  assert float(info.loss) == pytest.approx(float(extra.actor_loss) + float(extra.critic_loss),
                                           rel=1e-5)
  # The Q term is -mean Q_i / mean |Q_k|, within [-1, 1] when the critics agree in sign.
  q = agent.critic_network((qt.normalized_observation(agent.network, window.observation),
                            agent.predict_actions(window)))[0].numpy()
  mask = window.mask.numpy()
  i = int(agent.numerator_critic(agent.train_step_counter))
  want = -q[..., i][mask].mean() / np.abs(q[..., 1 - i][mask]).mean()
  assert float(extra.q_term) == pytest.approx(want, rel=1e-4)
  trained = agent.train(window)
  assert float(trained.extra.critic_gradient_norm) > 0
  assert float(trained.extra.actor_gradient_norm) > 0
  with pytest.raises(ValueError, match='next_observation'):
    agent.loss(window._replace(next_observation=()))


def test_soft_target_and_ema_updates():
  agent = make_agent(tau=0.5, ema_decay=0.75, ema_update_period=2, ema_start_step=0)
  for online, copy in ((agent.critic_network, agent.target_critic_network),
                       (agent.network, agent.ema_network)):
    for a, b in zip(online.variables, copy.variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  window = make_window()
  values = lambda net: [v.numpy() for v in net.trainable_variables]
  ema0 = values(agent.ema_network)
  for step in range(3):
    target = values(agent.target_critic_network)
    ema = values(agent.ema_network)
    agent.train(window)
    for new, old, online in zip(values(agent.target_critic_network), target,
                                values(agent.critic_network)):
      np.testing.assert_allclose(new, 0.5 * old + 0.5 * online, rtol=1e-5, atol=1e-6)
    due = step > 0 and step % 2 == 0
    for new, old, online in zip(values(agent.ema_network), ema, values(agent.network)):
      want = 0.75 * old + 0.25 * online if due else old
      np.testing.assert_allclose(new, want, rtol=1e-5, atol=1e-6)
  assert any(np.abs(a - b).max() > 0 for a, b in zip(values(agent.ema_network), ema0))


@pytest.mark.parametrize('selection', ['argmax', 'softmax'])
def test_candidate_selection(selection):
  agent = make_agent(selection=selection, num_candidates=7, candidate_spread=3.0)
  agent.train(make_window(batch=8))
  policy = agent.policy
  assert isinstance(policy, qt.QtPolicy) and agent.collect_policy is policy
  assert float(policy.target_return.numpy()) == 5.0   # the DT agent resolved it
  obs = tf.constant(np.random.default_rng(0).normal(size=(3, OBS_DIM)), tf.float32)
  first = ts.restart(obs, batch_size=3)
  actions, q, _ = policy.candidates(first, policy.get_initial_state(3))
  assert actions.shape == (3, 7, ACT_DIM) and q.shape == (3, 7)
  assert np.abs(np.diff(actions.numpy(), axis=1)).max() > 1e-5   # returns matter
  step = policy.action(first, policy.get_initial_state(3))
  chosen = step.action.numpy()
  if selection == 'argmax':
    best = tf.gather(actions, tf.argmax(q, -1), batch_dims=1).numpy()
    np.testing.assert_allclose(chosen, best, atol=1e-6)
    # The best is the min-critic Q of the target critics at the state.
    q_best = tf.reduce_min(agent.target_critic_network(
        (qt.normalized_observation(agent.network, obs), tf.constant(chosen)))[0], -1)
    np.testing.assert_allclose(q_best.numpy(), q.numpy().max(-1), rtol=1e-5, atol=1e-6)
  else:
    distances = np.abs(actions.numpy() - chosen[:, None]).max(-1).min(-1)
    assert distances.max() < 1e-6
  # The context records the chosen action and the unperturbed return-to-go.
  np.testing.assert_allclose(step.state['action'][:, -1].numpy(), chosen, atol=1e-6)
  np.testing.assert_allclose(step.state['return_to_go'][:, -1].numpy(), 5.0)


def test_mirrored_step_equals_single_device():
  window = make_window(batch=8, seed=4)
  results = {}
  for name, strategy in (('default', tf.distribute.get_strategy()),
                         ('mirrored', tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))):
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
      # SGD: Adam's first step (~ lr * sign(g)) would magnify rounding.
      agent = make_agent(eta=1.5, ema_start_step=-1, ema_update_period=1,
                         optimizer=tf.keras.optimizers.SGD(0.1),
                         critic_optimizer=tf.keras.optimizers.SGD(0.1))
    data = tf.data.Dataset.from_tensors(window).unbatch().batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(data)))
    info = strategy.run(tf.function(agent.train), args=(batch,))
    info = strategy.reduce(tf.distribute.ReduceOp.SUM, info, axis=None)
    nets = (agent.network, agent.critic_network, agent.target_critic_network, agent.ema_network)
    results[name] = (info, [v.numpy() for net in nets for v in net.variables])
  want, got = results['default'][0], results['mirrored'][0]
  for field in ('dt_loss', 'q_term', 'critic_loss', 'q_normalizer', 'actor_gradient_norm',
                'critic_gradient_norm'):
    assert float(getattr(got.extra, field)) == pytest.approx(
        float(getattr(want.extra, field)), rel=1e-4), field
  assert len(results['default'][1]) == len(results['mirrored'][1])
  for a, b in zip(results['default'][1], results['mirrored'][1]):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


PLAY_SAVED = '''
import sys, numpy as np
from tf_agents.policies import py_tf_eager_policy
from tests.agents.test_decision_transformer import _play
policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(sys.argv[1], load_specs_from_pbtxt=True)
np.save(sys.argv[2], _play(policy))
'''


def test_policy_runs_in_py_driver_and_saved_policy_matches(tmp_path):
  agent = make_agent(target_return=3.0)
  agent.train(make_window(batch=8))
  in_memory = _play(py_tf_eager_policy.PyTFEagerPolicy(agent.policy, use_tf_function=True))
  assert in_memory.shape[1:] == (ACT_DIM,) and len(in_memory) >= 20
  assert np.all(np.abs(in_memory) <= 1.0)
  saved_dir = str(tmp_path / 'policy')
  policy_saver.PolicySaver(agent.policy, batch_size=None).save(saved_dir)
  out = str(tmp_path / 'actions.npy')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
  subprocess.run([sys.executable, '-c', PLAY_SAVED, saved_dir, out], cwd=REPO, env=env,
                 check=True, capture_output=True, timeout=120)
  np.testing.assert_allclose(np.load(out), in_memory, atol=1e-5)


def test_bad_settings_fail_clearly():
  with pytest.raises(ValueError, match='condition_on_returns'):
    make_agent(network=make_network(condition_on_returns=False))
  with pytest.raises(ValueError, match='QtAgent.eta'):
    make_agent(eta=-1.0)
  with pytest.raises(ValueError, match='selection'):
    make_agent(selection='best')
  assert make_agent().window_layout.next_observation

