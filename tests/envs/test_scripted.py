"""The scripted Breakout policy: beats random play, exports and loads with PolicySaver."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from tf_offline_q.envs import atari
from tf_offline_q.envs import scripted


def _batched(time_step):
  return time_step._replace(
      step_type=tf.constant([time_step.step_type], tf.int32),
      reward=tf.constant([time_step.reward], tf.float32),
      discount=tf.constant([time_step.discount], tf.float32),
      observation=tf.constant(time_step.observation[None]))


def _play(env, choose, num_steps):
  """Total raw reward of `num_steps` agent steps (episodes restart)."""
  time_step = env.reset()
  total = 0.0
  for _ in range(num_steps):
    time_step = env.step(np.int64(choose(time_step)))
    total += float(time_step.reward)
  return total


def test_unknown_game_and_full_action_set_are_refused():
  with pytest.raises(ValueError, match='No scripted policy'):
    scripted.make_scripted_policy('Pong')
  with pytest.raises(ValueError, match='minimal action set'):
    scripted.make_scripted_policy('Breakout', action_spec=tensor_spec.BoundedTensorSpec(
        (), tf.int64, 0, 17))


def test_scripted_policy_beats_random_and_round_trips_policy_saver(tmp_path):
  env = atari.make_atari_env('Breakout', full_action_space=False, seed=3,
                             max_episode_frames=4000)
  policy = scripted.make_scripted_policy(
      'Breakout', tensor_spec.from_spec(env.time_step_spec()),
      tensor_spec.from_spec(env.action_spec()))
  export_dir = scripted.export_scripted_policy('Breakout', str(tmp_path / 'policy'))
  loaded = tf.saved_model.load(export_dir)

  # The export takes the same decisions as the in-memory policy.
  time_step = env.reset()
  rng = np.random.default_rng(0)
  for _ in range(60):
    batched = _batched(time_step)
    direct = int(policy.action(batched).action.numpy()[0])
    assert direct == int(loaded.action(batched).action.numpy()[0])
    time_step = env.step(np.int64(direct if rng.random() < 0.7 else rng.integers(4)))

  num_steps = 600
  scripted_return = _play(
      env, lambda ts: int(loaded.action(_batched(ts)).action.numpy()[0]), num_steps)
  random_return = _play(env, lambda ts: int(rng.integers(4)), num_steps)
  env.close()
  # Measured: about 10-20 points in 600 steps vs about 2-4 for random play.
  assert scripted_return >= 6.0
  assert scripted_return > 2 * random_return
