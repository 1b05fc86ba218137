"""Forward+backward time, FLOPs and fraction of matmul peak of the C51 Q-networks.

  TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/networks.py \
      [--backbones vit,vit_ts,convnet,resnet] [--variants S/14,micro,resnet34] \
      [--aggregations none] [--batch_size 32] [--steps N] [--jit_compile {off,on,both}]

  e.g. the Scaled-QL ResNets: --backbones resnet --variants micro,resnet34

For every (backbone, variant, aggregation) it builds a `C51QNetwork` and times
one training step without the optimizer: the C51 logits of a random uint8
batch `[B, 84, 84, 4]`, a cross-entropy loss on the logits of the data action
against a fixed random target distribution, and the gradient with respect to
every trainable variable, all in one `tf.function` (optionally XLA-compiled).
The first call (trace + compile) and `--warmup` further calls are not timed;
the table shows the median of the timed calls.

FLOPs per step come from TensorFlow's profiler on the concrete graph of that
`tf.function` (`model_analyzer.profile` with
`ProfileOptionBuilder.float_operation()`): it counts every op with a registered
FLOP statistic (MatMul, BatchMatMul, Conv2D and its two backprops, and also
element-wise Add/Mul/Softmax/...). Beside it the table shows an analytic count
of the matmul and convolution FLOPs only (`analytic_flops`, derived below).
For the ViTs the two agree to within 1% (the difference is element-wise ops:
S/14 ViT 629.3 vs 625.5 GFLOP per step at batch 32). For the convnet the
profiler says 2.16 and the analytic count 1.67 GFLOP: the profiler also counts
conv1's input gradient (`Conv2DBackpropInput` into the uint8 data, in the
graph but pruned at run time) and counts convolution backprops by its own
formula. Peak: the best of several timed float32 `2048 x 2048 @ 2048 x 2048`
matmuls in the same process, measured before and after the models.

The convnet has no variant: it is timed once, whatever `--variants` says.
ResNets (`--backbones resnet`) take the ResNet names of `--variants` (`micro`,
`resnet18`, `resnet34`, `resnet50`, `resnet101`; a ViT name is skipped for them
and a ResNet name for the ViTs) and ignore `--aggregations` (they always end
in learned spatial embeddings). Their analytic count is every convolution of
`resnet.conv_plan` (GroupNorm, ReLU and max-pool are element-wise, not
counted), the spatial-embedding contraction 2 * H * W * C * K and the head;
dropout is active (the step runs with `training=True`).
The paper (section 4) ran ViT-ts : ViT : convnet at about 12 : 24 : 48 training
steps/s on its accelerators; the second table puts our S/14 ratios (normalised
to convnet = 48) beside them.
"""
import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.python.profiler.model_analyzer import profile
from tensorflow.python.profiler.option_builder import ProfileOptionBuilder
from tensorflow.python.util import deprecation

from tf_offline_q import specs
from tf_offline_q.networks import q_network
from tf_offline_q.networks import resnet
from tf_offline_q.networks import vit

# Training steps/s of the paper's runs (section 4, "Architecture findings").
PAPER_STEPS_PER_SEC = {'vit_ts': 12.0, 'vit': 24.0, 'convnet': 48.0}
NUM_ACTIONS = 18
NUM_ATOMS = 51


def _log(*args):
  print(*args, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- analytic FLOPs
def _encoder_flops(tokens_per_seq, num_seqs, v):
  """Forward matmul FLOPs of one encoder (`v.depth` blocks) over `num_seqs`
  sequences of `tokens_per_seq` tokens, per example.

  Per block and token: qkv 2*D*3D, output projection 2*D*D, MLP 2*2*D*M;
  per block and sequence: scores Q K^T and weights @ V, 2*N*N*D each.
  """
  d, m, n = v.width, v.mlp_dim, tokens_per_seq
  linear = num_seqs * n * (2 * d * 3 * d + 2 * d * d + 2 * 2 * d * m)
  attention = num_seqs * 2 * (2 * n * n * d)
  return v.depth * (linear + attention)


def _head_flops(features, hidden, outputs):
  widths = [features] + list(hidden) + [outputs]
  return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))


def analytic_flops(backbone, variant, aggregation, batch_size, frame=(84, 84), stack=4,
                   num_actions=NUM_ACTIONS, num_atoms=NUM_ATOMS):
  """`(forward, forward + backward)` matmul/conv FLOPs of one batch (2 per multiply-add).

  Backward costs twice the forward for every matmul/conv (gradient wrt its
  input and wrt its weights), except the first layer (patch projection or
  conv1), whose input is data: only its weight gradient is computed. The
  element-wise ops (LayerNorm, GELU, softmax, biases, ...) are not counted.
  """
  outputs = num_actions * num_atoms
  if backbone == 'convnet':
    h, w, c = frame[0], frame[1], stack
    convs = []
    for filters, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
      h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
      convs.append(2 * h * w * filters * kernel * kernel * c)
      c = filters
    first = convs[0]
    forward = sum(convs) + _head_flops(h * w * c, [512], outputs)
  elif backbone == 'resnet':
    v = resnet.get_variant(variant)
    plan = resnet.conv_plan(v, frame, stack)
    convs = [2 * k * k * cin * cout * h * w for k, _, cin, cout, h, w in plan]
    first = convs[0]
    _, _, _, channels, h, w = plan[-1]
    embedding = 2 * h * w * channels * v.num_spatial_features
    forward = (sum(convs) + embedding
               + _head_flops(channels * v.num_spatial_features, v.head_hidden, outputs))
  else:
    v = vit.get_variant(variant)
    gh, gw = frame[0] // v.patch_size, frame[1] // v.patch_size
    patches = gh * gw
    tokens = stack * patches
    first = 2 * tokens * v.patch_size ** 2 * v.width
    if backbone == 'vit':
      encoders = _encoder_flops(tokens, 1, v)
    elif backbone == 'vit_ts':
      encoders = _encoder_flops(stack, patches, v)        # temporal: P sequences of T tokens
      if aggregation == 'mean':
        encoders += _encoder_flops(patches, 1, v)         # spatial on the T-mean: 1 x P tokens
      else:
        encoders += _encoder_flops(patches, stack, v)     # spatial: T sequences of P tokens
    else:
      raise ValueError(backbone)
    features = tokens * v.width if aggregation == 'learned' else v.width
    forward = first + encoders + _head_flops(features, v.head_hidden, outputs)
  forward *= batch_size
  first *= batch_size
  return forward, 3 * forward - first


# ----------------------------------------------------------------------------- measurement
def random_batch(batch_size, seed=0):
  """uint8 observations `[B, 84, 84, 4]`, actions `[B]`, target distributions `[B, atoms]`."""
  rng = np.random.default_rng(seed)
  observation = tf.constant(rng.integers(0, 256, (batch_size, 84, 84, 4)), tf.uint8)
  action = tf.constant(rng.integers(0, NUM_ACTIONS, (batch_size,)), tf.int32)
  target = tf.constant(rng.dirichlet(np.ones(NUM_ATOMS), batch_size), tf.float32)
  return observation, action, target


def make_network(backbone, variant, aggregation):
  net = q_network.C51QNetwork(specs.observation_spec(), specs.action_spec(NUM_ACTIONS),
                              backbone=backbone, variant=variant, aggregation=aggregation,
                              num_atoms=NUM_ATOMS)
  net.create_variables()
  return net


def make_step(net, jit_compile):
  """`tf.function` of one forward+backward step; returns the loss and all gradients
  (returning them keeps the backward pass from being pruned)."""
  variables = net.trainable_variables

  @tf.function(jit_compile=jit_compile)
  def step(observation, action, target):
    with tf.GradientTape() as tape:
      logits, _ = net(observation, training=True)                      # [B, A, atoms]
      chosen = tf.gather(logits, action, axis=1, batch_dims=1)         # [B, atoms]
      loss = tf.reduce_mean(
          tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=chosen))
    return loss, tape.gradient(loss, variables)

  return step


def profiler_flops(concrete_function):
  """FLOPs of a concrete function's graph, from TensorFlow's profiler.

  It sums the registered per-op FLOP statistics over every op in the graph,
  including gradient ops that the runtime prunes because no output needs them
  (e.g. the convnet's conv1 input gradient, `Conv2DBackpropInput` into uint8
  data), and it counts a strided convolution's backprop by its own formula;
  see `analytic_flops` for what is actually needed.
  """
  options = (ProfileOptionBuilder(ProfileOptionBuilder.float_operation())
             .with_empty_output().build())
  with deprecation.silence():   # the profiler's own use of a v1 graph helper
    return profile(concrete_function.graph, options=options).total_float_ops


def time_calls(fn, args, warmup, steps, time_budget):
  """`(first_call_s, [timed call seconds], cores)`. `cores` is this process's CPU
  time over wall time during the timed calls: 2.0 means it had both cores of
  this machine throughout, less means other processes took some. The first call (trace/compile) and
  `warmup` more are not timed; `warmup=None`: 2 more, or none if the first call
  took over 10 s (full-size models, where one more untimed step costs tens of
  seconds and changes nothing). `steps=None`: as many as fit in `time_budget`
  seconds (judged from the last untimed call), at least 3, at most 100."""
  sync = lambda out: float(out[0])  # CPU calls are synchronous; fetch the loss anyway
  start = time.perf_counter()
  sync(fn(*args))
  first = time.perf_counter() - start
  last = first
  if warmup is None:
    warmup = 0 if first > 10.0 else 2
  for _ in range(warmup):
    start = time.perf_counter()
    sync(fn(*args))
    last = time.perf_counter() - start
  if steps is None:
    steps = int(min(100, max(3, time_budget // max(last, 1e-6))))
  times = []
  start_cpu = time.process_time()
  for _ in range(steps):
    start = time.perf_counter()
    sync(fn(*args))
    times.append(time.perf_counter() - start)
  return first, times, (time.process_time() - start_cpu) / sum(times)


def matmul_peak(n=2048, reps=8):
  """GFLOP/s of `reps` float32 `[n, n] @ [n, n]` matmuls: `(best, median, cores)`,
  cores as in `time_calls`."""
  a = tf.random.normal([n, n], seed=1)
  b = tf.random.normal([n, n], seed=2)
  matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
  float(matmul(a, b))
  rates = []
  start_cpu, start_all = time.process_time(), time.perf_counter()
  for _ in range(reps):
    start = time.perf_counter()
    float(matmul(a, b))
    rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
  cores = (time.process_time() - start_cpu) / (time.perf_counter() - start_all)
  return max(rates), statistics.median(rates), cores


def _has_variant(backbone, variant):
  names = resnet.VARIANTS if backbone == 'resnet' else vit.VARIANTS
  return variant in names


def model_configs(backbones, variants, aggregations):
  configs = []
  for variant in variants:
    for backbone in backbones:
      if backbone == 'convnet' or not _has_variant(backbone, variant):
        continue
      for aggregation in (['-'] if backbone == 'resnet' else aggregations):
        configs.append((backbone, variant, aggregation))
  if 'convnet' in backbones:
    configs.append(('convnet', '-', 'none'))
  return configs


def model_name(backbone, variant, aggregation):
  if backbone == 'convnet':
    return 'convnet'
  if backbone == 'resnet':
    return f'resnet {variant}'
  return f'{backbone} {variant} {aggregation}'


def run(args):
  jit_modes = {'off': [False], 'on': [True], 'both': [False, True]}[args.jit_compile]
  peak_before = matmul_peak(args.peak_size, args.peak_reps)
  _log(f'matmul peak before: best {peak_before[0]:.1f}, median {peak_before[1]:.1f} GFLOP/s, '
       f'{peak_before[2]:.2f} cores')
  rows = []
  for backbone, variant, aggregation in model_configs(args.backbones, args.variants,
                                                      args.aggregations):
    net = make_network(backbone, variant if backbone != 'convnet' else 'S/14', aggregation)
    params = sum(int(v.shape.num_elements()) for v in net.trainable_variables)
    observation, action, target = random_batch(args.batch_size)
    _, analytic = analytic_flops(backbone, variant, aggregation, args.batch_size)
    for jit in jit_modes:
      step = make_step(net, jit)
      concrete = step.get_concrete_function(observation, action, target)
      total = profiler_flops(concrete)
      first, times, cores = time_calls(step, (observation, action, target), args.warmup, args.steps,
                                args.time_budget)
      median = statistics.median(times)
      row = dict(name=model_name(backbone, variant, aggregation), backbone=backbone,
                 variant=variant, aggregation=aggregation, jit=jit, params=params,
                 first=first, steps=len(times), median=median, min=min(times),
                 max=max(times), total=sum(times), cores=cores, flops=total, analytic=analytic)
      rows.append(row)
      _log(f"{row['name']} jit={jit}: first call {first:.2f}s, {len(times)} timed steps, "
           f"median {median * 1e3:.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}), "
           f"{cores:.2f} cores, "
           f"profiler {total / 1e9:.3f} GFLOP, "
           f"analytic {analytic / 1e9:.3f}")
    del net
  peak_after = matmul_peak(args.peak_size, args.peak_reps)
  _log(f'matmul peak after: best {peak_after[0]:.1f}, median {peak_after[1]:.1f} GFLOP/s, '
       f'{peak_after[2]:.2f} cores')
  return rows, peak_before, peak_after


def format_tables(rows, peak_before, peak_after, args):
  peak = max(peak_before[0], peak_after[0])
  # Matmul GFLOP per CPU-second (median rate / cores): less sensitive to other processes.
  peak_per_cpu = max(peak_before[1] / peak_before[2], peak_after[1] / peak_after[2])
  out = []
  out.append(f'Batch {args.batch_size}, forward+backward (no optimizer), float32, '
             f'{os.cpu_count()} CPU cores, TF {tf.__version__}. Load average at end: '
             f'{", ".join(f"{x:.2f}" for x in os.getloadavg())}.')
  out.append(f'float32 matmul {args.peak_size}^3 peak: best {peak_before[0]:.1f} / median '
             f'{peak_before[1]:.1f} GFLOP/s ({peak_before[2]:.2f} cores) before the models, '
             f'best {peak_after[0]:.1f} / median {peak_after[1]:.1f} ({peak_after[2]:.2f} cores) '
             f'after; "peak" below = {peak:.1f} GFLOP/s. "cores" = process CPU time / wall time '
             f'(2.00 = had both cores; the machine is shared). Per CPU-second the matmul ran at '
             f'{peak_per_cpu:.1f} GFLOP; the last column compares each model with that.\n')
  out.append('| model | XLA | params | timed steps | step ms (median) | min-max ms | cores | steps/s '
             '| GFLOP/step profiler | GFLOP/step analytic | GFLOP/s achieved (profiler) '
             '| % of matmul peak | GFLOP/s achieved (analytic) | % of matmul GFLOP per CPU-s (analytic) |')
  out.append('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for r in rows:
    achieved = r['flops'] / r['median'] / 1e9
    useful = r['analytic'] / r['median'] / 1e9
    per_cpu = r['analytic'] * r['steps'] / (r['cores'] * r['total']) / 1e9
    out.append(
        f"| {r['name']} | {'on' if r['jit'] else 'off'} | {r['params'] / 1e6:.2f}M | {r['steps']} "
        f"| {r['median'] * 1e3:.1f} | {r['min'] * 1e3:.1f}-{r['max'] * 1e3:.1f} | {r['cores']:.2f} "
        f"| {1 / r['median']:.3g} | {r['flops'] / 1e9:.3f} | {r['analytic'] / 1e9:.3f} "
        f"| {achieved:.1f} | {100 * achieved / peak:.1f}% | {useful:.1f} | {100 * per_cpu / peak_per_cpu:.1f}% |")
  # Ratios ViT-ts : ViT : convnet at S/14, normalised to convnet = 48 as in the paper.
  for jit in sorted({r['jit'] for r in rows}):
    by_backbone = {r['backbone']: r for r in rows
                   if r['jit'] == jit and r['aggregation'] == 'none'
                   and r['variant'] in ('S/14', '-')}
    if 'convnet' not in by_backbone or len(by_backbone) < 2:
      continue
    conv = 1 / by_backbone['convnet']['median']
    out.append(f"\nSteps/s ratios, S/14, aggregation none, XLA {'on' if jit else 'off'} "
               '(normalised to convnet = 48, as the paper states 12 : 24 : 48):\n')
    out.append('| backbone | paper steps/s | ours steps/s | ours normalised (convnet = 48) '
               '| paper / convnet | ours / convnet |')
    out.append('|---|---:|---:|---:|---:|---:|')
    for backbone in ('vit_ts', 'vit', 'convnet'):
      if backbone not in by_backbone:
        continue
      ours = 1 / by_backbone[backbone]['median']
      paper = PAPER_STEPS_PER_SEC[backbone]
      out.append(f'| {backbone} | {paper:.0f} | {ours:.3g} | {48 * ours / conv:.3g} '
                 f'| {paper / 48:.3f} | {ours / conv:.3g} |')
    if 'vit' in by_backbone and 'vit_ts' in by_backbone:
      ratio = by_backbone['vit']['median'] / by_backbone['vit_ts']['median']
      out.append(f'\nViT-ts / ViT steps/s: ours {ratio:.3f}, paper {12 / 24:.3f}.')
  return '\n'.join(out)


def _csv(text):
  return [x for x in text.split(',') if x]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--backbones', type=_csv, default=['vit', 'vit_ts', 'convnet'],
                      help='comma-separated subset of vit,vit_ts,convnet,resnet')
  parser.add_argument('--variants', type=_csv, default=['S/14', 'micro'],
                      help='comma-separated ViT variants (S/14, Ti/14, micro) and/or ResNet '
                           'variants (resnet18, resnet34, resnet50, resnet101, micro)')
  parser.add_argument('--aggregations', type=_csv, default=['none'],
                      help='comma-separated subset of none,mean,learned')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=None,
                      help='timed steps per model; default: as many as fit in --time_budget '
                           '(at least 3, at most 100)')
  parser.add_argument('--warmup', type=int, default=None,
                      help='untimed calls after the first (tracing) call; default 2, or 0 '
                           'when the first call takes over 10 s')
  parser.add_argument('--time_budget', type=float, default=15.0,
                      help='seconds of timed steps per model when --steps is not given')
  parser.add_argument('--jit_compile', nargs='?', const='on', default='off',
                      choices=['off', 'on', 'both'],
                      help='XLA: off (default), on (bare --jit_compile), or both')
  parser.add_argument('--peak_size', type=int, default=2048)
  parser.add_argument('--peak_reps', type=int, default=8)
  args = parser.parse_args(argv)
  for backbone in args.backbones:
    if backbone not in q_network.BACKBONES:
      parser.error(f'unknown backbone {backbone!r}')
  return args


def main(argv=None):
  # TF-Agents' `common.safe_has_state` (`state is not ()`) warns when autograph converts it.
  warnings.filterwarnings('ignore', message='"is not" with a literal', category=SyntaxWarning)
  args = parse_args(argv)
  rows, peak_before, peak_after = run(args)
  print(format_tables(rows, peak_before, peak_after, args))


if __name__ == '__main__':
  main()
