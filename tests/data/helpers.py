"""Test data with known contents, and an independent Dopamine reference.

`DopamineReference` re-implements, from the raw checkpoint arrays only, how
Dopamine's `OutOfGraphReplayBuffer` (loaded from a checkpoint, as batch_rl's
`FixedReplayBuffer` does) samples: the index range `[cursor - capacity +
stack - 1, cursor - update_horizon)`, `invalid_range`, the terminal check of
the state stack, and `sample_transition_batch`'s n-step reward, next state and
terminal. It shares no code with `tf_offline_q.data`.
"""
import gzip
import os

import numpy as np

from tf_offline_q.data import dqn_replay

# Frames carry their serial number (the order they were added) in two
# pixels, never both zero, so a sampled stack tells which index it came from.
_BASE = 251


def coded_frames(serials, rng, shape=(84, 84)) -> np.ndarray:
  """uint8 `[N, H, W]` noise frames whose pixels (0, 0), (0, 1) code serials."""
  serials = np.asarray(serials)
  frames = rng.integers(0, 256, size=(len(serials),) + tuple(shape),
                        dtype=np.uint8)
  frames[:, 0, 0] = serials % _BASE + 1
  frames[:, 0, 1] = serials // _BASE + 1
  return frames


def decode_serial(frame) -> int:
  """Serial of a coded frame, -1 for an all-zero (padding) frame."""
  frame = np.asarray(frame)
  if frame[0, 0] == 0:
    return -1
  return int(frame[0, 0]) - 1 + _BASE * (int(frame[0, 1]) - 1)


def synthetic_episodes(lengths, seed=0, terminal_last=True, shape=(84, 84)):
  """Episodes `(frames, actions, rewards, terminal)` with coded frames.

  Every episode ends in a terminal except the last when `terminal_last` is
  False. Rewards are small integers so n-step sums are exact in float32.
  """
  rng = np.random.default_rng(seed)
  serial = 0
  out = []
  for i, length in enumerate(lengths):
    frames = coded_frames(np.arange(serial, serial + length), rng, shape)
    serial += length
    actions = rng.integers(0, 18, size=length).astype(np.int64)
    rewards = rng.integers(-2, 3, size=length).astype(np.float32)
    terminal = terminal_last or i < len(lengths) - 1
    out.append((frames, actions, rewards, terminal))
  return out


def write_synthetic_run(replay_dir, lengths, capacity, checkpoint_every=None,
                        seed=0, terminal_last=True, stack_size=4):
  """Writes coded episodes as Dopamine files; returns (episodes, suffixes)."""
  episodes = synthetic_episodes(lengths, seed, terminal_last)
  suffixes = dqn_replay.write_episodes_as_dopamine(
      episodes, replay_dir, capacity=capacity,
      checkpoint_every=checkpoint_every, stack_size=stack_size)
  return episodes, suffixes


def load_gz(path) -> np.ndarray:
  with gzip.open(path, 'rb') as f:
    return np.load(f, allow_pickle=False)


class DopamineReference:
  """Dopamine's sampling rules on one checkpoint, from its raw files."""

  def __init__(self, replay_dir, suffix, stack_size=4, update_horizon=3,
               gamma=0.99):
    name = lambda n: os.path.join(replay_dir, f'{n}_ckpt.{suffix}.gz')
    self.observation = load_gz(name('$store$_observation'))
    self.action = load_gz(name('$store$_action'))
    self.reward = load_gz(name('$store$_reward'))
    self.terminal = load_gz(name('$store$_terminal'))
    self.add_count = int(load_gz(name('add_count')))
    self.invalid_range = set(int(i) for i in load_gz(name('invalid_range')))
    self.capacity = len(self.terminal)
    self.k = stack_size
    self.n = update_horizon
    self.gamma = gamma

  @property
  def cursor(self):
    return self.add_count % self.capacity

  def _range(self, array, start, end):
    return array[[(start + i) % self.capacity for i in range(end - start)]]

  def valid_indices(self):
    """Every index `sample_index_batch` can return (sorted)."""
    c, cap = self.cursor, self.capacity
    if self.add_count >= cap:
      min_id, max_id = c - cap + self.k - 1, c - self.n
    else:
      min_id, max_id = self.k - 1, c - self.n
    out = set()
    for raw in range(min_id, max_id):
      index = raw % cap
      if index in self.invalid_range:
        continue
      if self._range(self.terminal, index - self.k + 1, index + 1)[:-1].any():
        continue
      out.add(index)
    return sorted(out)

  def stack(self, index):
    """uint8 `[H, W, K]` state at `index`, oldest frame first."""
    frames = self._range(self.observation, index - self.k + 1, index + 1)
    return np.moveaxis(frames, 0, -1)

  def transition(self, index):
    """Dopamine's (state, action, n-step reward, next_state, terminal)."""
    terminals = self.terminal[[(index + j) % self.capacity
                               for j in range(self.n)]]
    is_terminal = bool(terminals.any())
    length = int(np.argmax(terminals.astype(bool))) + 1 if is_terminal else self.n
    rewards = self._range(self.reward, index, index + length)
    discounts = np.array([self.gamma**j for j in range(length)], np.float32)
    return {
        'state': self.stack(index),
        'action': int(self.action[index]),
        'reward': float(discounts.dot(rewards)),
        'next_state': self.stack((index + length) % self.capacity),
        'terminal': is_terminal,
    }

  def index_of_serial(self):
    """Maps a frame serial to its storage index."""
    return {decode_serial(self.observation[i]): i
            for i in range(self.capacity)
            if decode_serial(self.observation[i]) >= 0}


def n_step_from_trajectory(reward, discount, gamma, n):
  """The agent's n-step return and done flag from one item's `[n+1]` steps."""
  ret, prod = 0.0, 1.0
  for t in range(n):
    ret += gamma**t * float(reward[t]) * prod
    prod *= float(discount[t])
  return ret, prod == 0.0
