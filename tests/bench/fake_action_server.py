"""A fake action server for the tests: `protocol.serve` with a NumPy-only policy.

The action of an observation is `sum(observation) % num_actions`, so the
tests can check every action the evaluation loop received; `train` only
counts steps. Needs no torch and no d3rlpy.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'bench', 'd3rlpy_reference'))
import protocol  # pylint: disable=g-import-not-at-top,wrong-import-position


def fake_action(observation: np.ndarray, num_actions: int) -> np.ndarray:
  """int64 [B]: the fake policy's actions for uint8 [B, H, W, K] observations."""
  return (observation.reshape(len(observation), -1).sum(axis=1, dtype=np.int64)
          % num_actions).astype(np.int64)


class FakeHandler(protocol.Handler):

  def __init__(self, num_actions: int):
    self.num_actions = num_actions
    self.step = 0

  def cmd_hello(self, header, array):
    return {'num_actions': self.num_actions, 'step': self.step, 'transitions': 0,
            'versions': {'d3rlpy': 'fake', 'torch': 'none'}}, None

  def cmd_train(self, header, array):
    self.step += int(header['steps'])
    return {'step': self.step, 'losses': {'loss': 0.0}, 'seconds': 0.0}, None

  def cmd_act(self, header, array):
    return {}, fake_action(array, self.num_actions)

  def cmd_fail(self, header, array):
    raise ValueError('asked to fail')

  def cmd_save(self, header, array):
    for path in (header['path'], header['path'] + '.json'):
      with open(path, 'w') as f:
        f.write(str(self.step))
    return {'step': self.step}, None

  def cmd_load(self, header, array):
    with open(header['path'] + '.json') as f:
      self.step = int(f.read())
    return {'step': self.step}, None


if __name__ == '__main__':
  parser = argparse.ArgumentParser()
  parser.add_argument('--num_actions', type=int, default=3)
  parser.add_argument('--print_junk', action='store_true',
                      help='print to stdout after taking it over (must land on stderr)')
  args, _ = parser.parse_known_args()   # also takes (and ignores) server.py's flags
  out = protocol.protocol_stdout()
  if args.print_junk:
    print('a library printing to stdout', flush=True)
  protocol.serve(FakeHandler(args.num_actions), sys.stdin.buffer, out)
