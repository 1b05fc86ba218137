"""Multi-game agents: C51 equivalence, per-game heads under training, XLA, MirroredStrategy,
saved multi-game policies playing each game in a PyDriver."""

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.drivers import py_driver
from tf_agents.environments import py_environment
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from tests.agents import helpers
from tf_offline_q import specs
from tf_offline_q.agents import bc
from tf_offline_q.agents import cql_c51
from tf_offline_q.agents import losses
from tf_offline_q.networks import multi_head
from tf_offline_q.networks import q_network
from tf_offline_q.networks import resnet

NUM_GAMES = 3
# A two-stage ResNet (fast to trace); no dropout, so steps are deterministic.
TINY = resnet.Variant('basic', (1, 1), width=4, head_hidden=(16,), dropout=0.0)
_strategies = iter(range(1, 10_000))


def _mirrored():
  """A 2-CPU MirroredStrategy whose collective keys no other strategy in this
  process uses: every MirroredStrategy starts its group keys at 1, and the
  runtime keeps the shapes of earlier collectives under those keys (a second
  strategy in the process then fails with 'Shape mismatch in the collective').
  `_collective_key_base` is TensorFlow's own hook for this, meant for tests."""
  cls = type('Mirrored', (tf.distribute.MirroredStrategy,),
             {'_collective_key_base': 100_000 * next(_strategies)})
  return cls(['/cpu:0', '/cpu:1'])


def _obs_spec(num_games=NUM_GAMES):
  return multi_head.observation_spec(num_games)


def _batch(game_ids, seed=0, **kwargs):
  """`helpers.batch` with a game id per window (the same at every time step)."""
  experience = helpers.batch(len(game_ids), seed=seed, **kwargs)
  game = tf.repeat(tf.constant(game_ids, tf.int32)[:, None], experience.step_type.shape[1], 1)
  return experience._replace(observation={'frames': experience.observation, 'game_id': game})


def _q_net(num_games=NUM_GAMES, **kwargs):
  return q_network.C51QNetwork(_obs_spec(num_games), helpers.ACT, backbone='resnet',
                               variant=TINY, **kwargs)


def _cql(num_games=NUM_GAMES, net=None, **kwargs):
  net = net or _q_net(num_games)
  agent = cql_c51.CqlC51Agent(specs.time_step_spec(_obs_spec(num_games)), helpers.ACT, net,
                              **kwargs)
  agent.initialize()
  return agent, net


def _bc(num_games=NUM_GAMES, **kwargs):
  net = q_network.ActionLogitsNetwork(_obs_spec(num_games), helpers.ACT, backbone='resnet',
                                      variant=TINY)
  agent = bc.BehavioralCloningAgent(specs.time_step_spec(_obs_spec(num_games)), helpers.ACT,
                                    net, **kwargs)
  return agent, net


@pytest.mark.parametrize('num_games', [1, NUM_GAMES])
def test_alpha_zero_equals_tf_agents_categorical_dqn(num_games):
  agent, net = _cql(num_games, cql_alpha=0.0)
  theirs = categorical_dqn_agent.CategoricalDqnAgent(
      specs.time_step_spec(_obs_spec(num_games)), helpers.ACT, net,
      tf.keras.optimizers.Adam(1e-5), n_step_update=3, gamma=0.99, min_q_value=-10.0,
      max_q_value=10.0)
  theirs.initialize()
  for target in (agent._target_q_network, theirs._target_q_network):
    for v, w in zip(target.variables, net.variables):
      v.assign(w * 0.9 + 0.01)
  experience = _batch([i % num_games for i in range(6)], terminal_at={0: 0, 2: 2, 4: 1})
  with tf.GradientTape(persistent=True) as tape:
    our_loss = agent.loss(experience, training=True).loss
    their_loss = theirs._loss(experience, gamma=theirs._gamma, training=True).loss
  np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
  for a, b, v in zip(tape.gradient(our_loss, net.trainable_variables),
                     tape.gradient(their_loss, net.trainable_variables),
                     net.trainable_variables):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=v.name)


def _head(net, game):
  heads = net.layers[-1]
  return heads.kernel.numpy()[:, game], heads.bias.numpy()[game]


def _cql_dr3(**kwargs):
  """CQL with feature normalisation and DR3: the shared phi feeds every head."""
  return _cql(net=_q_net(feature_normalization=True), dr3_weight=0.1, **kwargs)


@pytest.mark.parametrize('make_agent', [_cql_dr3, _bc])
def test_a_step_on_one_games_examples_leaves_the_other_heads_unchanged(make_agent):
  agent, net = make_agent(learning_rate=1e-2)
  torso = [v.numpy() for v in net.layers[0].variables]
  before = [_head(net, g) for g in range(NUM_GAMES)]
  experience = _batch([1] * 4, seed=2)
  with tf.GradientTape() as tape:
    loss = agent.loss(experience, training=True).loss
  kernel_grad = tape.gradient(loss, net.layers[-1].kernel).numpy()
  np.testing.assert_array_equal(kernel_grad[:, [0, 2]], 0.0)
  assert np.abs(kernel_grad[:, 1]).max() > 0
  info = agent.train(experience)  # (eager: tracing costs more than it tests here)
  if make_agent is _cql_dr3:
    assert 0 < float(info.extra.dr3_loss) <= 1.0  # |phi(s) . phi(s')| of unit vectors
  after = [_head(net, g) for g in range(NUM_GAMES)]
  for g in (0, 2):
    np.testing.assert_array_equal(after[g][0], before[g][0])
    np.testing.assert_array_equal(after[g][1], before[g][1])
  assert not np.allclose(after[1][0], before[1][0])
  assert any(not np.allclose(a, b.numpy()) for a, b in zip(torso, net.layers[0].variables))


def test_xla_train_step_equals_eager():
  experience = _batch([0, 2, 1, 2], seed=4, terminal_at={1: 1})
  weights = {}
  for jit in (False, True):
    tf.keras.utils.set_random_seed(0)
    agent, net = _cql(optimizer=tf.keras.optimizers.SGD(0.5), cql_alpha=0.5)
    info = (tf.function(agent.train, jit_compile=True) if jit else agent.train)(experience)
    weights[jit] = (float(info.loss), [v.numpy() for v in net.trainable_variables])
  np.testing.assert_allclose(weights[True][0], weights[False][0], rtol=1e-5)
  for a, b in zip(weights[True][1], weights[False][1]):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_one_step_under_mirrored_strategy_equals_the_default_strategy():
  make_agent = _cql  # (BC shares the gradient path: agents/gradients.py)
  experience = _batch([0, 1, 2, 2, 1, 0, 0, 1], seed=6, terminal_at={1: 1})
  results = {}
  for name, strategy in (('default', tf.distribute.get_strategy()),
                         ('mirrored', _mirrored())):
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
      agent, net = make_agent(optimizer=tf.keras.optimizers.SGD(0.5), gradient_clipping=10.0)
    dataset = tf.data.Dataset.from_tensors(experience).unbatch().batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    # The default strategy runs eagerly (same ops, no tracing cost).
    train = agent.train if name == 'default' else tf.function(agent.train)
    info = strategy.run(train, args=(batch,))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, info.loss, axis=None)
    results[name] = (float(loss), [v.numpy() for v in net.trainable_variables])
  np.testing.assert_allclose(results['mirrored'][0], results['default'][0], rtol=1e-5)
  for a, b in zip(results['mirrored'][1], results['default'][1]):
    np.testing.assert_allclose(a, b, atol=1e-5)


class _OneGameEnv(py_environment.PyEnvironment):
  """Random frames of one game, tagged with its id; episodes of 4 steps."""

  def __init__(self, game_id, num_games=NUM_GAMES, seed=0):
    super().__init__()
    self._game_id = game_id
    self._rng = np.random.default_rng(seed)
    self._steps = 0
    self._obs_spec = {
        'frames': array_spec.BoundedArraySpec((84, 84, 4), np.uint8, 0, 255, 'observation'),
        'game_id': array_spec.BoundedArraySpec((), np.int32, 0, num_games - 1, 'game_id')}
    self._act_spec = array_spec.BoundedArraySpec((), np.int64, 0, 17, 'action')

  def observation_spec(self):
    return self._obs_spec

  def action_spec(self):
    return self._act_spec

  def _observation(self):
    return {'frames': self._rng.integers(0, 256, (84, 84, 4)).astype(np.uint8),
            'game_id': np.int32(self._game_id)}

  def _reset(self):
    self._steps = 0
    return ts.restart(self._observation())

  def _step(self, action):
    if self.current_time_step() is None or self.current_time_step().is_last():
      return self.reset()
    self._steps += 1
    if self._steps == 4:
      return ts.termination(self._observation(), 0.0)
    return ts.transition(self._observation(), 0.0)


@pytest.mark.parametrize('make_agent,save', [(_cql, True), (_bc, False)])
def test_multi_game_policy_plays_each_game_with_its_own_head(make_agent, save, tmp_path):
  """CQL: through PolicySaver and a SavedModel; BC: the in-memory policy (its
  saving is the same TF-Agents path, tested for one game in test_policies.py)."""
  agent, net = make_agent()
  # Heads 0 and 1 prefer action 5 * g + 1 by a wide margin, whatever the frames;
  # head 2 is left as initialised.
  heads = net.layers[-1]
  bias = np.zeros(heads.bias.shape, np.float32)
  for g in (0, 1):
    row = np.zeros(bias.shape[1:], np.float32).reshape(18, -1)
    row[5 * g + 1, -1] = 50.0          # C51: all mass on the top atom; BC: a large logit
    bias[g] = row.reshape(-1)
  heads.bias.assign(bias)
  if save:
    path = str(tmp_path / 'policy')
    policy_saver.PolicySaver(agent.policy, batch_size=None).save(path)
    saved = py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True)
    assert set(saved.time_step_spec.observation) == {'frames', 'game_id'}
  else:
    saved = py_tf_eager_policy.PyTFEagerPolicy(agent.policy, use_tf_function=False)
  played = {}
  for game in range(NUM_GAMES):
    played[game] = []
    env = _OneGameEnv(game, seed=game)
    observer = lambda traj, out=played[game]: out.append(
        (int(traj.observation['game_id']), int(traj.action), traj.observation['frames']))
    py_driver.PyDriver(env, saved, [observer], max_episodes=2).run(env.reset())
    assert len(played[game]) >= 8
    assert {g for g, _, _ in played[game]} == {game}
  assert {a for _, a, _ in played[0]} == {1} and {a for _, a, _ in played[1]} == {6}
  # Game 2: the saved policy acts as the in-memory network fed game id 2
  # (argmax of the expected Q, or of the BC logits).
  frames = tf.constant(np.stack([f for _, _, f in played[2]]))
  out = net({'frames': frames, 'game_id': tf.fill([len(played[2])], 2)})[0]
  scores = losses.expected_q(out, agent.support) if make_agent is _cql else out
  np.testing.assert_array_equal([a for _, a, _ in played[2]], tf.argmax(scores, -1))
