"""TFDS RLDS episodes of Atari, with exactly the features of TFDS `rlu_atari`.

Two kinds of datasets are read, from a local `data_dir` only (nothing is ever
downloaded):

  * TFDS's own `rlu_atari` / `rlu_atari_checkpoints_ordered`, prepared by the
    user (e.g. `{data_dir}/rlu_atari/Pong_run_1/1.3.0/`);
  * ours, `dqn_replay_atari` (`DqnReplayAtari` below), converted from Dopamine
    files by `launch/convert_dqn_replay.py`: one config per game and run
    (`Pong_run_1`), one split per Dopamine checkpoint (`checkpoint_00`, ...),
    episodes in chronological order.

Features (identical to `rlu_atari` 1.3.0):

  steps:  observation  Image(84, 84, 1) uint8, PNG
          action       int64
          reward       float32, raw (rlu_atari stores its unclipped rewards
                       here despite the feature's doc string)
          discount     float32
          is_first, is_last, is_terminal  bool
  episode_id int64, checkpoint_id int64, episode_return float32

RLDS and Dopamine align steps differently at a game over: RLDS ends a
terminal episode with an extra step holding the terminal observation
(`is_terminal`, `is_last`; its action and reward are meaningless) and puts the
0 discount on the step before it; Dopamine never stores the terminal
observation and marks the last stored step `terminal`. `episode_from_rlds`
drops that extra step and `DqnReplayAtari` adds it back (with an all-zero
frame, since Dopamine never recorded it), so a Dopamine episode of L steps is
an RLDS episode of L + 1 steps, and a cut (truncated) one is L steps with
`is_last` but no `is_terminal`.
"""
import dataclasses
import os
import re
import shutil
import tempfile
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_offline_q import progress as progress_lib
from tf_offline_q.data import dqn_replay

DataError = dqn_replay.DataError
Episode = dqn_replay.Episode

DATASET_NAME = 'dqn_replay_atari'
# Key of an episode: checkpoint_id * _KEY_STRIDE + episode_id, as TFDS's
# `rlu_atari_checkpoints_ordered` (sorted keys = chronological order).
_KEY_STRIDE = 10**10
_MAX_STEPS = 1 << 30


def features_dict() -> tfds.features.FeaturesDict:
  """The features of TFDS's `rlu_atari` (1.3.0), exactly."""
  return tfds.features.FeaturesDict({
      'steps': tfds.features.Dataset({
          'observation': tfds.features.Image(
              shape=(84, 84, 1), dtype=np.uint8, encoding_format='png'),
          'action': np.int64,
          'reward': tfds.features.Scalar(
              dtype=np.float32,
              doc=tfds.features.Documentation(
                  desc='Clipped reward.', value_range='[-1, 1]')),
          'is_terminal': np.bool_,
          'is_first': np.bool_,
          'is_last': np.bool_,
          'discount': np.float32,
      }),
      'checkpoint_id': np.int64,
      'episode_id': np.int64,
      'episode_return': tfds.features.Scalar(
          dtype=np.float32,
          doc=tfds.features.Documentation(desc='Sum of the clipped rewards.')),
  })


def config_name(game: str, run: int) -> str:
  """`{Game}_run_{run}`, the config naming of rlu_atari (game validated)."""
  return f'{dqn_replay.canonical_game(game)}_run_{int(run)}'


def split_name(checkpoint: int) -> str:
  return f'checkpoint_{int(checkpoint):02d}'


# ------------------------------------------------------------------- builder
@dataclasses.dataclass
class DqnReplayAtariConfig(tfds.core.BuilderConfig):
  """One game and run. Attributes: game (ALE name), run, checkpoints (None =
  all complete checkpoints of the Dopamine directory)."""
  game: str = 'Pong'
  run: int = 1
  checkpoints: Optional[Tuple[int, ...]] = None


class DqnReplayAtari(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """DQN-Replay Dopamine checkpoints as RLDS episodes, rlu_atari's features.

  The Dopamine `.../{GAME}/{RUN}/replay_logs` directory is the manual dir:

    builder = DqnReplayAtari(config=make_config('Pong', 1), data_dir=out)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=replay_dir))

  Use `launch/convert_dqn_replay.py`, which does this atomically.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Set manual_dir to a Dopamine DQN-Replay directory '
      '{GAME}/{RUN}/replay_logs holding $store$_*_ckpt.N.gz files.')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'DQN-Replay (Agarwal et al., 2020) Dopamine checkpoints as RLDS '
            'episodes with the features of rlu_atari. One split per Dopamine '
            'checkpoint; episodes in chronological order; raw rewards. A '
            'terminal episode ends with an extra is_terminal step whose '
            'observation is all zeros (Dopamine does not record it).'),
        features=features_dict(),
        supervised_keys=None,
        homepage='https://research.google/tools/datasets/dqn-replay/',
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    replay_dir = os.fspath(dl_manager.manual_dir)
    checkpoints = self.builder_config.checkpoints
    if checkpoints is None:
      checkpoints = dqn_replay.list_checkpoints(replay_dir)
    return {
        split_name(c): self._generate_examples(replay_dir, c)
        for c in checkpoints
    }

  def _generate_examples(self, replay_dir, checkpoint):
    progress = progress_lib.Progress(f'Converting checkpoint {checkpoint}', unit='steps')
    for episode in dqn_replay.iterate_episodes(
        replay_dir, checkpoints=[checkpoint], prefetch_checkpoints=0):
      key = episode.checkpoint_id * _KEY_STRIDE + episode.episode_id
      progress.update(len(episode))
      yield key, episode_to_rlds(episode)
    progress.done()


def make_config(game: str, run: int,
                checkpoints: Optional[Sequence[int]] = None
                ) -> DqnReplayAtariConfig:
  """The builder config of one game and run (game name validated)."""
  return DqnReplayAtariConfig(
      name=config_name(game, run), game=dqn_replay.canonical_game(game),
      run=int(run),
      checkpoints=None if checkpoints is None else tuple(
          int(c) for c in checkpoints))


def convert(replay_dir: str,
            data_dir: str,
            game: str,
            run: int = 1,
            checkpoints: Optional[Sequence[int]] = None,
            overwrite: bool = False) -> str:
  """Converts Dopamine files into `{data_dir}/dqn_replay_atari/{Game}_run_{run}`.

  The dataset is built in a temporary directory inside `data_dir` and renamed
  into place only when complete, so an interrupted conversion leaves no
  partial dataset (at most a hidden `.convert_tmp_*` directory if the process
  is killed outright).

  Args:
    replay_dir: the Dopamine `.../replay_logs` directory.
    data_dir: TFDS data directory to write to.
    game: ALE game name (validated), e.g. 'Pong'.
    run: run number.
    checkpoints: Dopamine checkpoint suffixes to convert; None = all.
    overwrite: replace an existing dataset of the same config and version.

  Returns:
    The dataset directory `{data_dir}/dqn_replay_atari/{config}/{version}`.

  Raises:
    FileExistsError: the dataset exists and `overwrite` is False.
    FileNotFoundError, DataError: bad Dopamine files (named).
  """
  config = make_config(game, run, checkpoints)
  version = str(DqnReplayAtari.VERSION)
  final = os.path.join(data_dir, DATASET_NAME, config.name, version)
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f'{final} exists; pass overwrite=True to replace it')
  # Validate everything (metadata only) before the slow part.
  for c in (checkpoints if checkpoints is not None else
            dqn_replay.list_checkpoints(replay_dir)):
    dqn_replay.read_checkpoint_info(replay_dir, c)
  os.makedirs(data_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.convert_tmp_', dir=data_dir)
  try:
    builder = DqnReplayAtari(config=config, data_dir=tmp)
    builder.download_and_prepare(
        download_dir=os.path.join(tmp, 'downloads'),
        download_config=tfds.download.DownloadConfig(manual_dir=replay_dir))
    built = os.path.join(tmp, DATASET_NAME, config.name, version)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    if os.path.exists(final):
      old = final + '.old_' + os.path.basename(tmp)
      os.rename(final, old)
      os.rename(built, final)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(built, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def _png(frame: np.ndarray) -> bytes:
  import cv2  # pylint: disable=g-import-not-at-top
  ok, buf = cv2.imencode('.png', frame)
  if not ok:
    raise DataError(f'PNG encoding failed for a frame of shape {frame.shape}')
  return buf.tobytes()


def episode_to_rlds(episode: Episode, encode_png: bool = True) -> dict:
  """An `Episode` as an rlu_atari example, see the module doc.

  Args:
    episode: the episode.
    encode_png: give observations as PNG bytes (fast, with OpenCV) rather
      than uint8 `[T, 84, 84, 1]` arrays for TFDS to encode.
  """
  frames = episode.observation
  n = len(frames)
  if n == 0:
    raise DataError(f'Episode ({episode.checkpoint_id}, {episode.episode_id}) '
                    'is empty')
  action = episode.action.astype(np.int64)
  reward = episode.reward.astype(np.float32)
  discount = episode.discount
  is_terminal = np.zeros(n, dtype=bool)
  if episode.terminal:
    frames = np.concatenate([frames, np.zeros_like(frames[:1])])
    action = np.append(action, np.int64(0))
    reward = np.append(reward, np.float32(0))
    discount = np.append(discount, np.float32(0))
    is_terminal = np.append(is_terminal, True)
  length = len(frames)
  steps = {
      'observation': ([_png(f) for f in frames] if encode_png else
                      frames[..., None]),
      'action': action,
      'reward': reward,
      'discount': discount,
      'is_first': np.arange(length) == 0,
      'is_last': np.arange(length) == length - 1,
      'is_terminal': is_terminal,
  }
  return {
      'steps': steps,
      'checkpoint_id': np.int64(episode.checkpoint_id),
      'episode_id': np.int64(episode.episode_id),
      'episode_return': np.float32(episode.reward.sum()),
  }


def episode_from_rlds(steps: dict, checkpoint_id: int, episode_id: int,
                      max_length: Optional[int] = None,
                      where: str = '') -> Optional[Episode]:
  """An rlu_atari episode's steps (numpy, decoded) as an `Episode`.

  Args:
    steps: dict of `[T, ...]` arrays with rlu_atari's step features;
      `observation` uint8 `[T, 84, 84, 1]`.
    checkpoint_id, episode_id: the episode's ids.
    max_length: cut the episode to this many steps (then it is not terminal).
    where: dataset name, for error messages.

  Returns:
    The `Episode`, or None if it has no step before its terminal step.

  Raises:
    DataError: naming the field, for inconsistent step flags or shapes, a NaN
      or infinite reward or a negative action (with its step).
  """
  name = f'{where} episode (checkpoint_id={checkpoint_id}, episode_id={episode_id})'
  obs = np.asarray(steps['observation'])
  t = len(obs)
  if obs.ndim != 4 or obs.shape[1:] != (84, 84, 1):
    raise DataError(f'{name}: steps/observation has shape {obs.shape}, '
                    'expected [T, 84, 84, 1]')
  for field in ('action', 'reward', 'is_first', 'is_last', 'is_terminal'):
    if len(steps[field]) != t:
      raise DataError(f'{name}: steps/{field} has {len(steps[field])} steps, '
                      f'observation has {t}')
  if t == 0:
    return None
  is_terminal = np.asarray(steps['is_terminal'], dtype=bool)
  is_last = np.asarray(steps['is_last'], dtype=bool)
  if not steps['is_first'][0]:
    raise DataError(f'{name}: steps/is_first is False on the first step')
  if not is_last[-1] or is_last[:-1].any():
    raise DataError(f'{name}: steps/is_last must be True on the last step only')
  if is_terminal[:-1].any():
    raise DataError(f'{name}: steps/is_terminal is True before the last step')
  terminal = bool(is_terminal[-1])
  length = t - 1 if terminal else t
  if max_length is not None and max_length < length:
    length, terminal = max_length, False
  if length <= 0:
    return None
  reward = np.asarray(steps['reward'][:length], dtype=np.float32)
  if not np.isfinite(reward).all():
    bad = int(np.flatnonzero(~np.isfinite(reward))[0])
    raise DataError(f'{name}: steps/reward is {reward[bad]} at step {bad}; the '
                    'dataset is corrupt')
  action = np.asarray(steps['action'][:length], dtype=np.int64)
  if (action < 0).any():
    bad = int(np.flatnonzero(action < 0)[0])
    raise DataError(f'{name}: steps/action is {action[bad]} at step {bad}; the '
                    'dataset is corrupt')
  return Episode(
      observation=obs[:length, :, :, 0],
      action=action,
      reward=reward,
      terminal=terminal,
      checkpoint_id=int(checkpoint_id),
      episode_id=int(episode_id))


# ------------------------------------------------------------------- reading
def dataset_dir(data_dir: str, name: str) -> str:
  """Resolves `name` ('rlu_atari/Pong_run_1[/1.3.0]') under `data_dir`.

  Without a version, the highest prepared version is used.

  Raises:
    FileNotFoundError: naming the path and what is there instead.
  """
  parts = [p for p in name.strip('/').split('/') if p]
  if len(parts) not in (2, 3):
    raise ValueError(f'dataset name must be "dataset/config[/version]", got '
                     f'{name!r}')
  base = os.path.join(data_dir, parts[0], parts[1])
  if not os.path.isdir(base):
    parent = os.path.dirname(base)
    have = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
    raise FileNotFoundError(
        f'TFDS dataset {parts[0]}/{parts[1]} not found in data_dir={data_dir} '
        f'(no {base}; present: {have or "nothing"}). Nothing is downloaded: '
        'prepare it first (launch/convert_dqn_replay.py for Dopamine files).')
  if len(parts) == 3:
    path = os.path.join(base, parts[2])
    if not os.path.isfile(os.path.join(path, 'dataset_info.json')):
      raise FileNotFoundError(f'No prepared TFDS dataset at {path}')
    return path
  versions = [v for v in os.listdir(base)
              if re.fullmatch(r'\d+\.\d+\.\d+', v) and
              os.path.isfile(os.path.join(base, v, 'dataset_info.json'))]
  if not versions:
    raise FileNotFoundError(f'No prepared version of {parts[0]}/{parts[1]} '
                            f'in {base}')
  best = max(versions, key=lambda v: tuple(int(x) for x in v.split('.')))
  return os.path.join(base, best)


def load_builder(data_dir: str, name: str) -> tfds.core.DatasetBuilder:
  """A read-only builder for a prepared dataset, features checked.

  Raises:
    FileNotFoundError: the dataset is not prepared in `data_dir`.
    DataError: naming the field whose spec differs from rlu_atari's.
  """
  builder = tfds.builder_from_directory(dataset_dir(data_dir, name))
  check_features(builder.info.features, where=name)
  return builder


def check_features(features: tfds.features.FeaturesDict, where: str = ''):
  """Raises DataError naming the first field that differs from rlu_atari's."""
  expected = features_dict().get_serialized_info()
  got = features.get_serialized_info()
  flat_expected = dict(_flatten(expected))
  flat_got = dict(_flatten(got))
  for key in sorted(set(flat_expected) | set(flat_got)):
    if key not in flat_got:
      raise DataError(f'{where}: missing feature {key!r}')
    if key not in flat_expected:
      raise DataError(f'{where}: unexpected feature {key!r}')
    e, g = flat_expected[key], flat_got[key]
    if (tuple(e.shape) != tuple(g.shape) or e.np_dtype != g.np_dtype):
      raise DataError(f'{where}: feature {key!r} is {g.np_dtype} {g.shape}, '
                      f'expected {e.np_dtype} {e.shape} (rlu_atari)')
  obs = features['steps']['observation']
  if tuple(obs.shape) != (84, 84, 1) or obs.np_dtype != np.uint8:
    raise DataError(f'{where}: feature steps/observation is {obs.np_dtype} '
                    f'{obs.shape}, expected uint8 (84, 84, 1)')


def _flatten(tree, prefix=''):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flatten(v, f'{prefix}{k}/' if isinstance(v, dict) else
                          f'{prefix}{k}')
  else:
    yield prefix, tree


def _splits(builder, split: Optional[str]) -> List[str]:
  names = sorted(builder.info.splits.keys())
  if split is None:
    return names
  wanted = [s for s in split.split('+') if s]
  unknown = [s for s in wanted if s not in names]
  if unknown:
    raise DataError(f'{builder.info.full_name}: unknown split(s) {unknown}; '
                    f'available: {names}')
  return wanted


def _episode_dataset(builder, splits: Sequence[str],
                     mask: Optional[np.ndarray] = None) -> tf.data.Dataset:
  """(position, episode) in file order; steps batched, PNGs still encoded.

  Args:
    builder: the dataset's builder.
    splits: splits read one after the other.
    mask: bool `[num_episodes]`; episodes whose position is False are dropped
      before their steps are touched.
  """
  ds = builder.as_dataset(
      split='+'.join(splits), shuffle_files=False,
      decoders={'steps': {'observation': tfds.decode.SkipDecoding()}},
      read_config=tfds.ReadConfig(try_autocache=False)).enumerate()
  if mask is not None:
    keep = tf.constant(mask)
    ds = ds.filter(lambda i, episode: tf.gather(keep, i))

  def batch_steps(i, episode):
    steps = episode['steps'].batch(_MAX_STEPS).get_single_element()
    return i, {
        'checkpoint_id': episode['checkpoint_id'],
        'episode_id': episode['episode_id'],
        'steps': steps,
    }
  return ds.map(batch_steps, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)


def _decode_png_frames(encoded: tf.Tensor) -> tf.Tensor:
  """string `[T]` -> uint8 `[T, 84, 84, 1]`."""
  return tf.map_fn(lambda s: tf.io.decode_png(s, channels=1), encoded,
                   fn_output_signature=tf.TensorSpec([None, None, 1], tf.uint8))


def _episode_lengths(builder, splits) -> List[Tuple[int, int, int]]:
  """(checkpoint_id, episode_id, number of steps) of every episode, in order."""
  ds = _episode_dataset(builder, splits).map(
      lambda i, e: (e['checkpoint_id'], e['episode_id'],
                    tf.shape(e['steps']['action'])[0]))
  return [tuple(int(x) for x in row) for row in ds.as_numpy_iterator()]


def iterate_episodes(data_dir: str,
                     name: str,
                     split: Optional[str] = None,
                     fraction: float = 1.0,
                     mode: str = 'uniform',
                     seed: int = 0) -> Iterator[Episode]:
  """Episodes of a subset of a prepared rlu_atari-like dataset.

  Args:
    data_dir: TFDS data directory.
    name: 'rlu_atari/Pong_run_1', 'rlu_atari_checkpoints_ordered/Pong_run_1'
      or 'dqn_replay_atari/Pong_run_1' (optionally '/version').
    split: split(s) joined by '+'; None = all, in sorted order.
    fraction: share of the data kept, in (0, 1].
    mode: 'uniform' = `round(fraction * E)` of the E episodes drawn at random
      with `seed` (same rule as `dqn_replay.select_uniform`, over the episodes
      in file order: for our `dqn_replay_atari` that is the order of the
      Dopamine files, so both sources give the same subset); 'first' = in
      every checkpoint (`checkpoint_id`), the first `fraction` of its steps,
      taking episodes in `episode_id` order and cutting the last one.
    seed: seed of the 'uniform' draw.

  Yields:
    `Episode`s (terminal episodes without rlu_atari's extra terminal step).

  Raises:
    FileNotFoundError: the dataset is not in `data_dir`.
    DataError: wrong features, unknown split, inconsistent steps, empty subset.
  """
  dqn_replay.check_subset(fraction, mode)
  builder = load_builder(data_dir, name)
  splits = _splits(builder, split)
  total = sum(builder.info.splits[s].num_examples for s in splits)
  if total == 0:
    raise DataError(f'{name}: no episodes in split(s) {splits}')

  max_len = np.full(total, -1, dtype=np.int64)  # -1 = whole episode
  if mode == 'uniform':
    if fraction >= 1.0:
      selected = np.ones(total, dtype=bool)
    else:
      selected = np.zeros(total, dtype=bool)
      selected[dqn_replay.select_uniform(total, fraction, seed)] = True
  else:
    lengths = _episode_lengths(builder, splits)
    selected = np.zeros(len(lengths), dtype=bool)
    max_len = np.full(len(lengths), -1, dtype=np.int64)
    by_ckpt = {}
    for pos, (ckpt, ep, n) in enumerate(lengths):
      by_ckpt.setdefault(ckpt, []).append((ep, pos, n))
    for ckpt, eps in by_ckpt.items():
      budget = int(round(fraction * sum(n for _, _, n in eps)))
      for ep, pos, n in sorted(eps):
        if budget <= 0:
          break
        selected[pos] = True
        if n > budget:
          max_len[pos] = budget
        budget -= n
    if not selected.any():
      raise DataError(f'Empty subset: mode=first fraction={fraction} keeps no '
                      f'step of {name}')

  ds = _episode_dataset(builder, splits, mask=selected)

  def decode(i, episode):
    steps = dict(episode['steps'])
    steps['observation'] = _decode_png_frames(steps['observation'])
    return i, episode['checkpoint_id'], episode['episode_id'], steps
  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(2)
  for i, ckpt, ep, steps in ds.as_numpy_iterator():
    limit = int(max_len[i])
    episode = episode_from_rlds(steps, ckpt, ep,
                                max_length=None if limit < 0 else limit,
                                where=name)
    if episode is not None:
      yield episode
