"""Exports the transitions `launch/train.py` trains on as a `transitions.npz`.

Runs in the project venv. The episodes come from the project's own reader,
`reverb_stream.iterate_source(parse_source(data_source), fraction,
subset_mode, data_seed)` (what `train_eval` loads into Reverb), and the
transitions from `reverb_stream.item_starts(episode, n_step)` (where the
Reverb writer creates items), so the d3rlpy reference trains on the identical
subset, frames, stacking and n-step transitions. Format: `transitions.py`.
"""
import json
import os
import sys
import time
from typing import Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from bench.d3rlpy_reference import transitions  # pylint: disable=g-import-not-at-top


def build_table(data_source: str, fraction: float, subset_mode: str = 'uniform',
                data_seed: int = 0, n_step: int = 3, stack_size: int = 4,
                game: Optional[str] = None) -> transitions.TransitionTable:
  """The transitions of a subset, read as `train_eval` reads it.

  Args:
    data_source: 'dopamine:REPLAY_DIR' (or 'tfds:...'), as `train_eval.data_source`.
    fraction, subset_mode, data_seed: `train_eval`'s subset settings.
    n_step: `train_eval.n_step` (decides which steps start a transition).
    stack_size: frames per state (the project's 4).
    game: recorded in the metadata.
  """
  from tf_offline_q.data import reverb_stream  # pylint: disable=g-import-not-at-top
  frames, episode_ids, actions, rewards, discounts, starts = [], [], [], [], [], []
  steps = 0
  episodes = reverb_stream.iterate_source(reverb_stream.parse_source(data_source), fraction,
                                          subset_mode, data_seed)
  for number, episode in enumerate(episodes):
    length = len(episode)
    if not length:
      continue
    frames.append(np.asarray(episode.observation, np.uint8))
    episode_ids.append(np.full(length, number, np.int32))
    actions.append(np.asarray(episode.action, np.int64))
    rewards.append(np.asarray(episode.reward, np.float32))
    discounts.append(episode.discount)
    starts.append(steps + reverb_stream.item_starts(episode, n_step).astype(np.int64))
    steps += length
  if not frames:
    raise ValueError(f'{data_source}: the subset (fraction {fraction}, {subset_mode}, seed '
                     f'{data_seed}) holds no episode')
  meta = dict(game=game, data_source=data_source, fraction=fraction, subset_mode=subset_mode,
              data_seed=data_seed, stack_size=stack_size, n_step=n_step, episodes=len(frames),
              steps=steps)
  table = transitions.TransitionTable(dict(
      frames=np.concatenate(frames), episode=np.concatenate(episode_ids),
      action=np.concatenate(actions), reward=np.concatenate(rewards),
      discount=np.concatenate(discounts), starts=np.concatenate(starts)), meta)
  table.meta['transitions'] = table.num_transitions
  return table


def export(path: str, data_source: str, fraction: float, subset_mode: str = 'uniform',
           data_seed: int = 0, n_step: int = 3, stack_size: int = 4,
           game: Optional[str] = None) -> transitions.TransitionTable:
  """Writes `build_table(...)` to `path` (temporary file + rename); reuses an
  existing file made with the same settings."""
  wanted = dict(data_source=data_source, fraction=fraction, subset_mode=subset_mode,
                data_seed=data_seed, stack_size=stack_size, n_step=n_step)
  if os.path.exists(path):
    try:
      table = transitions.TransitionTable.load(path)
      if all(table.meta.get(k) == v for k, v in wanted.items()):
        return table
      print(f'{path} was exported with other settings; exporting again', flush=True)
    except ValueError as e:
      print(f'{e}; exporting again', flush=True)
  start = time.time()
  table = build_table(data_source, fraction, subset_mode, data_seed, n_step, stack_size, game)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.{os.getpid()}.tmp'
  try:
    table.save(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  print(f'Exported {table.num_transitions} transitions ({table.meta["steps"]} steps, '
        f'{table.meta["episodes"]} episodes) of {data_source} (fraction {fraction}, '
        f'{subset_mode}, seed {data_seed}, n_step {n_step}) to {path} in '
        f'{time.time() - start:.0f}s', flush=True)
  return table


def describe(table: transitions.TransitionTable) -> str:
  return json.dumps({k: table.meta[k] for k in sorted(table.meta)})
