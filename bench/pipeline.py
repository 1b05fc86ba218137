r"""Throughput of the data pipeline, against the learners it feeds.

  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/pipeline.py \
      [--replay_dir=.../replay_logs] [--game=Pong --num_steps=6000] \
      [--seconds=10] [--learner_steps_per_sec_micro=X] \
      [--learner_steps_per_sec_full=Y] [--skip_full]

Prints
  (a) transitions/s loaded from Dopamine files into a Reverb table (gzip
      decompression, episode segmentation and Reverb writes, end to end; the
      read-only rate is given beside it);
  (b) sampled batches/s of 32 transitions (stack 4, n 3) out of Reverb through
      the tf.data graph (`make_dataset`: sampling, stacking, n-step layout);
  (c) the ratio of (b) to the train steps/s of the micro and full-size ViT-ts
      learners (`bench/agent_step.py`'s `measure_steps_per_sec`, or the
      `--learner_steps_per_sec_*` flags), with the targets: (b) >= 10x the
      full-size learner and >= 1x the micro learner;
  (d) the micro learner's steps/s when fed by the pipeline, against a fixed
      in-memory batch: if the pipeline kept it waiting, (d) would fall.

Without `--replay_dir`, real ALE play is generated first (random policy,
`launch/generate_dqn_replay.py`) into a temporary directory.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from tf_offline_q.data import dqn_replay  # pylint: disable=g-import-not-at-top
from tf_offline_q.data import reverb_stream  # pylint: disable=g-import-not-at-top

flags.DEFINE_string('replay_dir', None, 'Existing Dopamine replay_logs dir.')
flags.DEFINE_string('game', 'Pong', 'Game to generate when no --replay_dir.')
flags.DEFINE_integer('num_steps', 6000, 'Steps to generate.')
flags.DEFINE_integer('checkpoint_every', 3000, 'Generated checkpoint size.')
flags.DEFINE_float('fraction', 1.0, 'Share of the data loaded.')
flags.DEFINE_integer('batch_size', 32, 'Transitions per batch.')
flags.DEFINE_integer('stack_size', 4, 'Frames per state.')
flags.DEFINE_integer('n_step', 3, 'n of n-step transitions.')
flags.DEFINE_integer('chunk_length', None, 'Reverb chunk length (default '
                     'stack_size + n_step).')
flags.DEFINE_float('seconds', 10.0, 'Sampling time for (b).')
flags.DEFINE_string('backbone', 'vit_ts', 'Learner backbone.')
flags.DEFINE_string('micro_variant', 'micro', 'Micro learner variant.')
flags.DEFINE_string('full_variant', 'S/14', 'Full-size learner variant.')
flags.DEFINE_float('learner_steps_per_sec_micro', None,
                   'Micro learner train steps/s (default: measured).')
flags.DEFINE_float('learner_steps_per_sec_full', None,
                   'Full-size learner train steps/s (default: measured).')
flags.DEFINE_bool('skip_full', False, 'Do not measure the full-size learner.')
flags.DEFINE_integer('fed_steps', 30, 'Timed train steps for (d); 0 skips.')


def _generate(root):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  f = flags.FLAGS
  subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch', 'generate_dqn_replay.py'),
       f'--root_dir={root}', f'--game={f.game}', f'--num_steps={f.num_steps}',
       f'--checkpoint_every={f.checkpoint_every}'],
      check=True, env=env, cwd=REPO)
  return dqn_replay.dopamine_replay_dir(root, f.game, 1)


def _agent_step():
  try:
    from bench import agent_step  # pylint: disable=g-import-not-at-top
    return agent_step
  except ImportError as e:
    print(f'bench/agent_step.py not importable ({e}); pass '
          '--learner_steps_per_sec_micro/_full', flush=True)
    return None


def _learner_rate(agent_step, given, variant, label):
  if given is not None:
    return given, 'given'
  if agent_step is None or not hasattr(agent_step, 'measure_steps_per_sec'):
    return None, 'unavailable'
  print(f'measuring the {label} learner ({variant}) ...', flush=True)
  return agent_step.measure_steps_per_sec(
      flags.FLAGS.backbone, variant, batch_size=flags.FLAGS.batch_size), \
      'measured'


def _fed_learner(agent_step, dataset, steps):
  """(steps/s fed by `dataset`, steps/s on a fixed batch), micro learner."""
  f = flags.FLAGS
  agent = agent_step.make_cql_agent(
      agent_step.make_network(f.backbone, f.micro_variant))
  train = agent_step.compile_train(agent)
  it = iter(dataset)
  fixed = next(it)
  for _ in range(3):
    train(fixed)
  rates = {'fixed': [], 'fed': []}
  for _ in range(3):  # alternate, so that outside load hits both alike
    start = time.perf_counter()
    for _ in range(steps // 3):
      loss = train(fixed)
    float(loss.loss)
    rates['fixed'].append((steps // 3) / (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(steps // 3):
      loss = train(next(it))
    float(loss.loss)
    rates['fed'].append((steps // 3) / (time.perf_counter() - start))
  return statistics.median(rates['fed']), statistics.median(rates['fixed'])


def main(argv):
  del argv
  f = flags.FLAGS
  tmp = None
  try:
    replay_dir = f.replay_dir
    if not replay_dir:
      tmp = tempfile.mkdtemp(prefix='bench_pipeline_')
      replay_dir = _generate(tmp)
    print(f'data: {replay_dir}', flush=True)

    # (a) Dopamine files -> Reverb.
    start = time.perf_counter()
    episodes, steps = 0, 0
    for episode in dqn_replay.iterate_episodes(
        replay_dir, fraction=f.fraction, stack_size=f.stack_size):
      episodes += 1
      steps += len(episode)
    read_rate = steps / (time.perf_counter() - start)
    server = reverb_stream.ReplayServer(
        [f.game], stack_size=f.stack_size, n_step=f.n_step,
        validate_games=False)
    stats = server.fill_from(
        f.game, reverb_stream.DopamineSource(replay_dir,
                                             recorded_stack_size=f.stack_size),
        fraction=f.fraction, chunk_length=f.chunk_length)
    print(f'(a) load Dopamine -> Reverb: {stats.steps_per_second:,.0f} '
          f'transitions/s ({stats.steps} transitions, {stats.items} items, '
          f'{stats.episodes} episodes in {stats.seconds:.2f}s; reading alone '
          f'{read_rate:,.0f} transitions/s)', flush=True)

    # (b) Reverb -> tf.data batches.
    dataset = reverb_stream.make_dataset(
        server.address, f.game, f.batch_size, n_step=f.n_step,
        stack_size=f.stack_size)
    it = iter(dataset)
    for _ in range(20):
      next(it)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < f.seconds:
      batch = next(it)
      count += 1
    batch.observation.numpy()
    sample_rate = count / (time.perf_counter() - start)
    print(f'(b) sample Reverb -> tf.data: {sample_rate:,.1f} batches/s of '
          f'{f.batch_size} (stack {f.stack_size}, n {f.n_step}) = '
          f'{sample_rate * f.batch_size:,.0f} transitions/s', flush=True)
    del it

    # (c) Against the learners.
    agent_step = _agent_step()
    micro, micro_how = _learner_rate(agent_step, f.learner_steps_per_sec_micro,
                                     f.micro_variant, 'micro')
    if f.skip_full and f.learner_steps_per_sec_full is None:
      full, full_how = None, 'skipped'
    else:
      full, full_how = _learner_rate(agent_step, f.learner_steps_per_sec_full,
                                     f.full_variant, 'full-size')
    for label, rate, how, target in (
        (f'micro {f.backbone} {f.micro_variant}', micro, micro_how, 1.0),
        (f'full {f.backbone} {f.full_variant}', full, full_how, 10.0)):
      if rate is None:
        print(f'(c) {label}: learner rate {how}', flush=True)
        continue
      ratio = sample_rate / rate
      verdict = 'OK' if ratio >= target else 'TOO SLOW'
      print(f'(c) {label}: {rate:.3g} train steps/s ({how}); pipeline/learner '
            f'= {ratio:,.1f}x (target >= {target:g}x): {verdict}', flush=True)

    # (d) The micro learner fed by the pipeline.
    if agent_step is not None and f.fed_steps > 0 and hasattr(
        agent_step, 'make_cql_agent'):
      fed, fixed = _fed_learner(agent_step, dataset, max(3, f.fed_steps))
      print(f'(d) micro learner fed by the pipeline: {fed:.2f} steps/s vs '
            f'{fixed:.2f} on a fixed batch ({fed / fixed:.0%})', flush=True)
    server.stop()
  finally:
    if tmp:
      shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
