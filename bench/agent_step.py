"""Train steps/s of `CqlC51Agent` against TF-Agents' `CategoricalDqnAgent`.

  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/agent_step.py \
      [--backbones vit,vit_ts] [--variants micro,S/14] [--aggregation none] \
      [--batch_size 32] [--rounds N] [--steps_per_round N] [--jit_compile] [--no_ablation]

Both agents get the same network (two copies with identical weights), the same
Adam(1e-5) optimizer settings, n_step 3, 51 atoms on [-10, 10], and the same
random `Trajectory` batch `[B, 4, 84, 84, 4]`; each has its own int64 train
step counter. Each agent's `train` is one `tf.function` (XLA with
`--jit_compile`). After the first (tracing) call and `--warmup` more untimed
calls, the agents are timed in strict alternation A B (C) A B (C) ..., each
turn `steps_per_round` train steps, so that load from other processes on the
shared machine hits both alike. Steps/s is the inverse of the median per-step
time over rounds. The overhead is given two ways: the median over rounds of
the paired ratio CQL time / C51 time, minus 1 (range over rounds beside it),
and the ratio of the two agents' total process CPU time (all threads) over all
rounds, minus 1, which other processes on the loaded machine disturb far less
than wall time.

Besides the two agents, a third column times `CqlC51Agent` with the CQL term
removed from its graph (`CqlTermRemovedAgent`, `--no_ablation` to skip): the
same code path minus exactly logsumexp_a Q(s, a) - Q(s, a_data), which
isolates the cost of the CQL term itself. (The two agents differ in more than
the CQL term: TF-Agents' `CategoricalDqnAgent` runs the target network on
s_n twice per step, once for the logits and once more inside
`_target_greedy_policy.action`, while `CqlC51Agent` runs it once.)

`measure_steps_per_sec` (train steps/s of `CqlC51Agent` alone) is imported by
other scripts; importing this module has no side effects.
"""
import argparse
import math
import os
import statistics
import sys
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import common

from tf_offline_q import specs
from tf_offline_q.agents import cql_c51
from tf_offline_q.agents import losses
from tf_offline_q.networks import q_network

N_STEP = 3
NUM_ACTIONS = 18
NUM_ATOMS = 51
LEARNING_RATE = 1e-5


def _log(*args):
  print(*args, file=sys.stderr, flush=True)


def make_batch(batch_size=32, n_step=N_STEP, seed=0) -> trajectory.Trajectory:
  """A random `Trajectory` `[B, n_step + 1, ...]` with uint8 observations, no terminals."""
  rng = np.random.default_rng(seed)
  t = n_step + 1
  step_type = np.full((batch_size, t), ts.StepType.MID, np.int32)
  return trajectory.Trajectory(
      step_type=tf.constant(step_type),
      observation=tf.constant(rng.integers(0, 256, (batch_size, t, 84, 84, 4)), tf.uint8),
      action=tf.constant(rng.integers(0, NUM_ACTIONS, (batch_size, t)), tf.int64),
      policy_info=(),
      next_step_type=tf.constant(step_type),
      reward=tf.constant(rng.uniform(-1, 1, (batch_size, t)), tf.float32),
      discount=tf.constant(np.ones((batch_size, t), np.float32)))


def make_network(backbone='vit_ts', variant='micro', aggregation='none'):
  net = q_network.C51QNetwork(specs.observation_spec(), specs.action_spec(NUM_ACTIONS),
                              backbone=backbone, variant=variant, aggregation=aggregation,
                              num_atoms=NUM_ATOMS)
  net.create_variables()
  return net


def copy_network(net):
  """An independent network with the same weights."""
  other = net.copy()
  other.create_variables()
  other.set_weights(net.get_weights())
  return other


def make_cql_agent(network, agent_class=None):
  agent_class = agent_class or cql_c51.CqlC51Agent
  agent = agent_class(specs.time_step_spec(), specs.action_spec(NUM_ACTIONS), network,
                      optimizer=tf.keras.optimizers.Adam(LEARNING_RATE), n_step=N_STEP,
                      train_step_counter=tf.Variable(0, dtype=tf.int64))
  agent.initialize()
  return agent


def make_c51_agent(network):
  """TF-Agents' C51 with the settings `CqlC51Agent` passes it (Table 2)."""
  agent = categorical_dqn_agent.CategoricalDqnAgent(
      specs.time_step_spec(), specs.action_spec(NUM_ACTIONS), network,
      optimizer=tf.keras.optimizers.Adam(LEARNING_RATE), min_q_value=-10.0, max_q_value=10.0,
      epsilon_greedy=0.01, n_step_update=N_STEP, target_update_period=2000, gamma=0.99,
      train_step_counter=tf.Variable(0, dtype=tf.int64))
  agent.initialize()
  return agent


def _no_cql_term(q_values, actions):
  del actions
  zeros = tf.zeros(tf.shape(q_values)[:1], q_values.dtype)
  return zeros, zeros, zeros


class CqlTermRemovedAgent(cql_c51.CqlC51Agent):
  """`CqlC51Agent` whose graph has no CQL term (ablation, for timing only).

  While `_loss` is traced, `losses.cql_regularizer` returns zeros that do not
  depend on the Q-values, so neither the logsumexp nor its gradient is built;
  everything else is the agent's own code.
  """

  def _loss(self, *args, **kwargs):
    original = losses.cql_regularizer
    losses.cql_regularizer = _no_cql_term
    try:
      return super()._loss(*args, **kwargs)
    finally:
      losses.cql_regularizer = original


def compile_train(agent, jit_compile=False):
  return common.function(agent.train, jit_compile=jit_compile)


def _run_timed(train, experience, steps):
  """`(wall, cpu)` seconds per train step, averaged over `steps` consecutive steps;
  cpu is this process's CPU time (all threads)."""
  start, start_cpu = time.perf_counter(), time.process_time()
  for _ in range(steps):
    loss_info = train(experience)
  float(loss_info.loss)  # CPU calls are synchronous; fetch the loss anyway
  return ((time.perf_counter() - start) / steps, (time.process_time() - start_cpu) / steps)


def _run(train, experience, steps):
  """Wall seconds per train step, averaged over `steps` consecutive steps."""
  return _run_timed(train, experience, steps)[0]


def _warm_up(train, experience, warmup):
  """`(first_call_s, last_warmup_step_s)`: trace/compile and `warmup` untimed steps."""
  first = _run(train, experience, 1)
  last = first
  for _ in range(warmup):
    last = _run(train, experience, 1)
  return first, last


def _is_full_size(variant):
  return variant not in ('micro',)


def default_warmup(variant):
  """Untimed steps after the first (tracing) call: 2 for micro; 0 for full-size
  models, whose steps take tens of seconds here and are steady from the
  second call on."""
  return 0 if _is_full_size(variant) else 2


def measure_steps_per_sec(backbone='vit_ts', variant='micro', aggregation='none',
                          batch_size=32, steps: Optional[int] = None,
                          jit_compile=False, warmup: Optional[int] = None) -> float:
  """Train steps/s of `CqlC51Agent` (median step time; warm-up excluded).

  Args:
    backbone, variant, aggregation: the `C51QNetwork`.
    batch_size: windows per batch (time axis n_step + 1 = 4).
    steps: timed train steps; None: 3 for full-size variants, 30 for micro.
    jit_compile: XLA-compile the train step.
    warmup: untimed calls after the first (tracing) call; None: `default_warmup`.
  """
  if steps is None:
    steps = 3 if _is_full_size(variant) else 30
  agent = make_cql_agent(make_network(backbone, variant, aggregation))
  experience = make_batch(batch_size)
  train = compile_train(agent, jit_compile)
  _warm_up(train, experience, default_warmup(variant) if warmup is None else warmup)
  times = [_run(train, experience, 1) for _ in range(steps)]
  return 1.0 / statistics.median(times)


def compare(backbone, variant, aggregation='none', batch_size=32, rounds=None,
            steps_per_round=None, jit_compile=False, warmup=None, ablation=True,
            round_seconds=0.5):
  """Times the agents in alternation; returns a dict of per-agent round times."""
  net = make_network(backbone, variant, aggregation)
  agents = {'cql': make_cql_agent(net)}
  agents['c51'] = make_c51_agent(copy_network(net))
  if ablation:
    agents['no_cql'] = make_cql_agent(copy_network(net), CqlTermRemovedAgent)
  experience = make_batch(batch_size)
  trains = {name: compile_train(agent, jit_compile) for name, agent in agents.items()}
  first, step_estimate = {}, 0.0
  if warmup is None:
    warmup = default_warmup(variant)
  for name, train in trains.items():
    first[name], last = _warm_up(train, experience, warmup)
    step_estimate = max(step_estimate, last)
    _log(f'  {name}: first call {first[name]:.2f}s, last warm-up step {last:.3f}s')
  if rounds is None:
    rounds = 3 if step_estimate > 1.0 else 30
  if steps_per_round is None:
    steps_per_round = max(1, math.ceil(round_seconds / step_estimate))
  times = {name: [] for name in trains}
  cpu_times = {name: [] for name in trains}
  for r in range(rounds):
    for name, train in trains.items():  # strict alternation A B (C) A B (C) ...
      wall, cpu = _run_timed(train, experience, steps_per_round)
      times[name].append(wall)
      cpu_times[name].append(cpu)
    _log(f'  round {r}: ' + ', '.join(f'{n} {t[-1] * 1e3:.1f} ms' for n, t in times.items()))
  return dict(backbone=backbone, variant=variant, aggregation=aggregation, jit=jit_compile,
              rounds=rounds, steps_per_round=steps_per_round, first=first, times=times,
              cpu_times=cpu_times)


def _summary(result):
  times = result['times']
  sps = {name: 1.0 / statistics.median(t) for name, t in times.items()}
  paired = lambda a, b: [x / y - 1.0 for x, y in zip(times[a], times[b])]
  overhead = paired('cql', 'c51')
  cpu = lambda a, b: sum(result['cpu_times'][a]) / sum(result['cpu_times'][b]) - 1.0
  summary = dict(sps=sps, overhead=statistics.median(overhead),
                 overhead_range=(min(overhead), max(overhead)), overhead_cpu=cpu('cql', 'c51'))
  if 'no_cql' in times:
    term = paired('cql', 'no_cql')
    summary.update(term=statistics.median(term), term_range=(min(term), max(term)),
                   term_cpu=cpu('cql', 'no_cql'))
  return summary


def format_table(results):
  ablation = all('no_cql' in r['times'] for r in results)
  header = ('| model | XLA | rounds x steps | CqlC51Agent steps/s | CategoricalDqnAgent steps/s '
            '| overhead % (CQL vs C51), paired median (range) | overhead %, CPU time |')
  rule = '|---|---|---:|---:|---:|---:|---:|'
  if ablation:
    header += (' CqlC51Agent without CQL term, steps/s | CQL term cost %, paired median (range) '
               '| CQL term cost %, CPU time |')
    rule += '---:|---:|---:|'
  lines = [header, rule]
  for r in results:
    s = _summary(r)
    name = f"{r['backbone']} {r['variant']} {r['aggregation']}"
    line = (f"| {name} | {'on' if r['jit'] else 'off'} | {r['rounds']} x {r['steps_per_round']} "
            f"| {s['sps']['cql']:.3g} | {s['sps']['c51']:.3g} | {100 * s['overhead']:+.1f} "
            f"({100 * s['overhead_range'][0]:+.1f} to {100 * s['overhead_range'][1]:+.1f}) "
            f"| {100 * s['overhead_cpu']:+.1f} |")
    if ablation:
      line += (f" {s['sps']['no_cql']:.3g} | {100 * s['term']:+.1f} "
               f"({100 * s['term_range'][0]:+.1f} to {100 * s['term_range'][1]:+.1f}) "
               f"| {100 * s['term_cpu']:+.1f} |")
    lines.append(line)
  return '\n'.join(lines)


def _csv(text):
  return [x for x in text.split(',') if x]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--backbones', type=_csv, default=['vit', 'vit_ts'])
  parser.add_argument('--variants', type=_csv, default=['micro', 'S/14'])
  parser.add_argument('--aggregation', default='none')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--rounds', type=int, default=None,
                      help='alternation rounds; default 30 (3 if a step takes over 1 s)')
  parser.add_argument('--steps_per_round', type=int, default=None,
                      help='train steps per agent per round; default ~0.5 s worth (at least 1)')
  parser.add_argument('--warmup', type=int, default=None,
                      help='untimed calls after the first (tracing) call; default 2 for '
                           'micro, 0 for full-size variants')
  parser.add_argument('--jit_compile', action='store_true', help='XLA-compile the train steps')
  parser.add_argument('--no_ablation', dest='ablation', action='store_false',
                      help='skip the CqlC51Agent-without-CQL-term column')
  parser.add_argument('--measure_only', action='store_true',
                      help='print measure_steps_per_sec() for each model and exit')
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  models = [(b, v) for v in args.variants for b in args.backbones]
  if args.measure_only:
    for backbone, variant in models:
      sps = measure_steps_per_sec(backbone, variant, args.aggregation, args.batch_size,
                                  jit_compile=args.jit_compile)
      print(f'{backbone} {variant} {args.aggregation}: CqlC51Agent {sps:.3f} steps/s')
    return
  results = []
  for backbone, variant in models:
    _log(f'{backbone} {variant} {args.aggregation} (jit_compile={args.jit_compile}):')
    results.append(compare(backbone, variant, args.aggregation, args.batch_size, args.rounds,
                           args.steps_per_round, args.jit_compile, args.warmup, args.ablation))
  print(f'Batch {args.batch_size}, n_step {N_STEP} (time axis {N_STEP + 1}), {NUM_ATOMS} atoms, '
        f'Adam; steps/s from the median round; {os.cpu_count()} CPU cores, load average at end '
        f'{", ".join(f"{x:.2f}" for x in os.getloadavg())}.\n')
  print(format_table(results))


if __name__ == '__main__':
  main()
