"""Policies shared by the agents: greedy, and epsilon-greedy for evaluation."""
import tensorflow as tf
from tf_agents.policies import epsilon_greedy_policy
from tf_agents.policies import greedy_policy
from tf_agents.policies import q_policy

EVAL_EPSILON = 0.001  # Table 2


def epsilon_greedy(policy, epsilon: float = EVAL_EPSILON):
  """`policy` with probability 1 - epsilon, a uniform random action otherwise."""
  return epsilon_greedy_policy.EpsilonGreedyPolicy(policy, epsilon=epsilon)


def greedy_logits_policy(time_step_spec, action_spec, logits_network):
  """Greedy (argmax) policy over a network emitting action logits `[B, A]`."""
  return greedy_policy.GreedyPolicy(
      q_policy.QPolicy(time_step_spec, action_spec, q_network=logits_network))


def own_counter(train_step_counter=None):
  """The agent's train step counter: the given one, or a new int64 variable
  (TF-Agents would otherwise share the global step between agents)."""
  if train_step_counter is not None:
    return train_step_counter
  return tf.Variable(0, dtype=tf.int64, trainable=False, name='train_step')
