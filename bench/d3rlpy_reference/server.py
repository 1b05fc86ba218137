r"""d3rlpy's DiscreteCQL / DiscreteBC as a trainer and action server (runs in the d3rlpy venv).

Started by `run_reference.py` as

  bench/d3rlpy_reference/.venv/bin/python bench/d3rlpy_reference/server.py \
      --transitions=T.npz --algo=cql --num_actions=3 --seed=0 ...

it answers the requests of `protocol.py` on stdin/stdout: `train` (N more
d3rlpy updates), `act` (greedy actions for a batch of the project's uint8
`[B, 84, 84, 4]` observations), `save` / `load` (the d3rlpy model with its
optimizer, and the update count). It imports nothing of the project's: only
`protocol.py` and `transitions.py`, which need NumPy alone.

Training. Each update draws `batch_size` transitions uniformly from the
exported table (`transitions.TransitionTable.sample`: the project's subset,
stacking and n-step returns, rewards clipped to [-reward_clip, reward_clip])
and passes them to d3rlpy's own `algo.update(TransitionMiniBatch)`:

  observations       float32 [B, K, H, W]   s_0, channel-first (d3rlpy's image layout)
  actions            float32 [B, 1]         a_0
  rewards            float32 [B, 1]         G, the n-step return
  next_observations  float32 [B, K, H, W]   s_n
  terminals          float32 [B, 1]         1 - prod d (an episode end within n steps)
  intervals          float32 [B, 1]         n, so d3rlpy bootstraps with gamma^n

d3rlpy then computes everything else itself: `PixelObservationScaler` (x /
255), its default pixel encoder (the Nature-DQN convnet: 32@8x8/4, 64@4x4/2,
64@3x3/1, dense 512), and

  DiscreteCQL  alpha (E_s[logsumexp_a Q(s, a)] - E_{s,a}[Q(s, a)])
               + Huber(Q(s_0, a_0) - (G + gamma^n (1 - terminal) Q_target(s_n, argmax_a Q(s_n, a))))
               (Double DQN; hard target copy every `target_update_interval` updates)
  DiscreteBC   cross-entropy of a_0 + beta * mean(logits^2)   (d3rlpy's regulariser)
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import protocol  # pylint: disable=g-import-not-at-top,wrong-import-position
import transitions  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--transitions', required=True, help='transitions.npz from export.py')
  p.add_argument('--algo', choices=('cql', 'bc'), required=True)
  p.add_argument('--num_actions', type=int, required=True)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument('--learning_rate', type=float, default=3e-4)
  p.add_argument('--gamma', type=float, default=0.99)
  p.add_argument('--target_update_period', type=int, default=200)
  p.add_argument('--cql_alpha', type=float, default=0.05)
  p.add_argument('--bc_beta', type=float, default=0.5, help="d3rlpy's DiscreteBC default")
  p.add_argument('--reward_clip', type=float, default=1.0, help='<= 0: off')
  p.add_argument('--threads', type=int, default=1, help='torch.set_num_threads')
  return p.parse_args(argv)


class D3rlpyHandler(protocol.Handler):
  """The trainer behind the protocol."""

  def __init__(self, args):
    import d3rlpy  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    self._args = args
    self._versions = {'d3rlpy': d3rlpy.__version__, 'torch': torch.__version__,
                      'numpy': np.__version__}
    self._table = transitions.TransitionTable.load(args.transitions)
    self._rng = np.random.default_rng(args.seed)
    self._reward_clip = args.reward_clip if args.reward_clip > 0 else None
    scaler = d3rlpy.preprocessing.PixelObservationScaler()
    if args.algo == 'cql':
      config = d3rlpy.algos.DiscreteCQLConfig(
          batch_size=args.batch_size, learning_rate=args.learning_rate, gamma=args.gamma,
          target_update_interval=args.target_update_period, alpha=args.cql_alpha,
          observation_scaler=scaler)
    else:
      config = d3rlpy.algos.DiscreteBCConfig(
          batch_size=args.batch_size, learning_rate=args.learning_rate, beta=args.bc_beta,
          observation_scaler=scaler)
    self._config = config
    self._algo = config.create(device=False)
    h, w = self._table.frames.shape[1:]
    self._observation_shape = (self._table.stack_size, h, w)
    self._algo.create_impl(self._observation_shape, args.num_actions)
    self._step = 0

  def _minibatch(self, batch: transitions.Batch):
    from d3rlpy.dataset import TransitionMiniBatch  # pylint: disable=g-import-not-at-top
    size = len(batch.index)
    column = lambda x: np.asarray(x, np.float32).reshape(size, 1)
    return TransitionMiniBatch(
        observations=self._channels_first(batch.observation),
        actions=column(batch.action),
        rewards=column(batch.n_step_return),
        next_observations=self._channels_first(batch.next_observation),
        next_actions=np.zeros((size, 1), np.float32),
        terminals=column(1.0 - batch.alive),
        intervals=np.full((size, 1), self._table.n_step, np.float32),
        transitions=[])

  @staticmethod
  def _channels_first(observation: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, K] -> float32 [B, K, H, W] (scaled by d3rlpy's scaler)."""
    return np.ascontiguousarray(np.moveaxis(observation, -1, 1), dtype=np.float32)

  def cmd_hello(self, header, array):
    del header, array
    return {'observation_shape': [*self._table.frames.shape[1:], self._table.stack_size],
            'num_actions': self._args.num_actions, 'step': self._step,
            'transitions': self._table.num_transitions, 'meta': self._table.meta,
            'versions': self._versions, 'algo': self._args.algo,
            'config': json.loads(self._config.serialize())}, None

  def cmd_train(self, header, array):
    del array
    steps = int(header.get('steps', 0))
    if steps < 0:
      raise ValueError(f'steps must be >= 0, got {steps}')
    start = time.perf_counter()
    totals = {}
    for _ in range(steps):
      batch = self._table.sample(self._rng, self._args.batch_size, self._args.gamma,
                                 self._reward_clip)
      losses = self._algo.update(self._minibatch(batch))
      self._step += 1
      for k, v in losses.items():
        totals[k] = totals.get(k, 0.0) + float(v)
    means = {k: v / steps for k, v in totals.items()} if steps else {}
    return {'step': self._step, 'losses': means,
            'seconds': time.perf_counter() - start}, None

  def cmd_act(self, header, array):
    del header
    if array is None or array.ndim != 4:
      raise ValueError(f'act needs a [B, H, W, K] array, got '
                       f'{None if array is None else list(array.shape)}')
    actions = self._algo.predict(self._channels_first(array))
    return {}, np.asarray(actions, np.int64).reshape(-1)

  def cmd_save(self, header, array):
    del array
    path = header['path']
    tmp = f'{path}.tmp'
    self._algo.save_model(tmp)
    os.replace(tmp, path)
    state = {'step': self._step, 'rng': self._rng.bit_generator.state}
    with open(f'{path}.json.tmp', 'w') as f:
      json.dump(state, f)
    os.replace(f'{path}.json.tmp', f'{path}.json')
    return {'step': self._step}, None

  def cmd_load(self, header, array):
    del array
    path = header['path']
    self._algo.load_model(path)
    with open(f'{path}.json') as f:
      state = json.load(f)
    self._step = int(state['step'])
    self._algo._grad_step = self._step  # pylint: disable=protected-access  (target-copy phase)
    self._rng.bit_generator.state = state['rng']
    return {'step': self._step}, None


def main(argv=None):
  out = protocol.protocol_stdout()   # Before d3rlpy: its log lines go to stderr.
  args = parse_args(argv)
  protocol.serve(D3rlpyHandler(args), sys.stdin.buffer, out)


if __name__ == '__main__':
  main()
