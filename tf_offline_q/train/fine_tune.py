"""Offline fine-tuning: start a run from a pre-trained run's network (Scaled Q-learning).

`train_eval.init_checkpoint = 'PRETRAINED_RUN_DIR'` (or one checkpoint of it,
'PRETRAINED_RUN_DIR/train/checkpoints/ckpt-N'; a run directory gives its
newest intact checkpoint) initialises the new run's network before its first
step:

  torso   every variable before the output layer (the backbone, e.g. the
          ResNet and its spatial embeddings, and the hidden head layers) is
          copied exactly;
  heads   the output head of each game of the new run that the pre-trained
          run also trained (matched by game name, not id: ids are positions in
          each run's own `games` list) is copied; the heads of new games keep
          their fresh initialisation (`multi_head.GameHeads`: Glorot-uniform,
          zero bias).

Only the online network is read; the target network starts as its copy
(`agent.initialize()`), the optimizer starts fresh, and the step starts at 0.
A run that resumes from its own checkpoint ignores `init_checkpoint` (its
weights come from that checkpoint). Single-game runs (one `Dense` output
layer) and multi-game runs (`GameHeads`) can be the source or the target
alike.

The architecture must match: the pre-trained run's `run_config.json`
(agent_type, backbone, variant, aggregation, feature_normalization, size of
the action set) is compared with the new run's, and then every torso
variable's shape; a mismatch is an `ArchitectureMismatchError` listing each
difference and naming the checkpoint. Fine-tuning on a fraction of the new
game's data uses the usual subset options (`train_eval.fraction`,
`subset_mode`, `data_seed`).
"""
import json
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_offline_q import specs
from tf_offline_q.envs import games as games_lib
from tf_offline_q.networks import multi_head
from tf_offline_q.networks import q_network
from tf_offline_q.train import run_dir as run_dir_lib

# The agent attribute holding the trained network, per agent_type.
NETWORK_ATTRIBUTES = {'cql': '_q_network', 'bc': '_network'}
# Settings that fix the network's shape or function.
ARCHITECTURE_SETTINGS = ('agent_type', 'backbone', 'variant', 'aggregation',
                         'feature_normalization')
_CHECKPOINTS = os.path.join('train', 'checkpoints')


class ArchitectureMismatchError(ValueError):
  """The pre-trained checkpoint's network differs from the requested one."""


def resolve_checkpoint(init_checkpoint: str) -> Tuple[str, str]:
  """`(pretrained run directory, checkpoint prefix)` of `init_checkpoint`.

  Raises:
    ValueError: naming `init_checkpoint` when it is neither a run directory
      with an intact checkpoint nor a checkpoint prefix of a run directory.
  """
  path = os.path.abspath(init_checkpoint)
  if os.path.isdir(path):
    run_dir = path
    directory = os.path.join(path, _CHECKPOINTS)
    numbers = sorted(int(n[len('ckpt-'):-len('.index')]) for n in
                     (os.listdir(directory) if os.path.isdir(directory) else [])
                     if n.startswith('ckpt-') and n.endswith('.index'))
    for number in reversed(numbers):
      prefix = os.path.join(directory, f'ckpt-{number}')
      if run_dir_lib.checkpoint_damage(prefix) is None:
        return run_dir, prefix
    raise ValueError(f'train_eval.init_checkpoint {init_checkpoint!r}: no intact checkpoint '
                     f'in {directory} (train the pre-training run first)')
  if os.path.exists(path + '.index'):
    problem = run_dir_lib.checkpoint_damage(path)
    if problem:
      raise ValueError(f'train_eval.init_checkpoint {init_checkpoint!r}: {problem}')
    run_dir = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    return run_dir, path
  raise ValueError(f'train_eval.init_checkpoint {init_checkpoint!r} is neither a run directory '
                   'nor a checkpoint (RUN_DIR/train/checkpoints/ckpt-N)')


def pretrained_settings(run_dir: str) -> Dict[str, Any]:
  """The pre-trained run's recorded settings (`run_config.json` "fixed"), with
  `games` (its games in id order) and `num_actions` filled in."""
  path = os.path.join(run_dir, run_dir_lib.CONFIG_FILE)
  try:
    with open(path) as f:
      fixed = json.load(f)['fixed']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f'train_eval.init_checkpoint: cannot read the pre-trained run\'s settings '
                     f'from {path} ({e}); init_checkpoint must be a train_eval run '
                     'directory') from e
  settings = dict(fixed)
  games = fixed.get('games') or []
  settings['multi_game'] = bool(games)
  settings['games'] = list(games) or [fixed['game']]
  settings['num_actions'] = action_count(settings['games'], bool(fixed.get('full_action_space')))
  return settings


def action_count(game_names: Sequence[str], full_action_space: bool) -> int:
  """Actions of a run on `game_names` (the full set, or the one game's minimal set)."""
  if full_action_space or len(game_names) > 1:
    return games_lib.full_action_count(game_names[0])
  env = games_lib.make_env(game_names[0], full_action_space=False)
  try:
    return int(env.action_spec().maximum) + 1
  finally:
    env.close()


def check_architecture(pretrained: Mapping[str, Any], requested: Mapping[str, Any],
                       checkpoint: str):
  """Raises `ArchitectureMismatchError` listing every architecture setting that differs."""
  differences = [f'  {name}: {pretrained.get(name)!r} (pre-trained) vs {requested[name]!r} (now)'
                 for name in ARCHITECTURE_SETTINGS + ('num_actions',)
                 if str(pretrained.get(name)) != str(requested[name])]
  if differences:
    raise ArchitectureMismatchError(
        f'train_eval.init_checkpoint {checkpoint}: the pre-trained network differs from the '
        'requested one:\n' + '\n'.join(differences) +
        '\nFine-tune with the pre-training settings of these fields.')


def make_network(agent_type: str, game_names: Sequence[str], multi_game: bool,
                 num_actions: int, backbone: str, variant: str, aggregation: str,
                 feature_normalization: bool):
  """A network of `agent_type` for `game_names` (as `train_eval` builds it)."""
  observation = (multi_head.observation_spec(len(game_names)) if multi_game
                 else specs.observation_spec())
  cls = q_network.C51QNetwork if agent_type == 'cql' else q_network.ActionLogitsNetwork
  network = cls(observation, specs.action_spec(num_actions), backbone=backbone,
                variant=variant, aggregation=aggregation,
                feature_normalization=feature_normalization)
  network.create_variables()
  return network


def restore_network(network, agent_type: str, prefix: str):
  """Reads the agent's online network from a `Learner` checkpoint into
  `network` (every variable of `network` must be in it)."""
  agent = tf.train.Checkpoint(**{NETWORK_ATTRIBUTES[agent_type]: network})
  status = tf.train.Checkpoint(agent=agent).read(prefix)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise ArchitectureMismatchError(
        f'train_eval.init_checkpoint {prefix}: the checkpoint does not hold every variable '
        f'of the requested {agent_type} network ({str(e).splitlines()[0][:300]})') from e
  status.expect_partial()


def torso_variables(network) -> List[tf.Variable]:
  """Every variable before the output layer, in a fixed order."""
  # pylint: disable=protected-access
  layers = [network._backbone] + list(network._hidden)
  return [v for layer in layers for v in layer.variables]


def _head(output, g: int) -> Tuple[np.ndarray, np.ndarray]:
  """`(kernel [F, O], bias [O])` of head g of an output layer (`GameHeads` or `Dense`)."""
  if isinstance(output, multi_head.GameHeads):
    return output.kernel.numpy()[:, g], output.bias.numpy()[g]
  return output.kernel.numpy(), output.bias.numpy()


def _set_head(output, g: int, kernel: np.ndarray, bias: np.ndarray):
  """Assigns head g of an output layer (`GameHeads` or `Dense`)."""
  if isinstance(output, multi_head.GameHeads):
    kernels, biases = output.kernel.numpy(), output.bias.numpy()
    kernels[:, g], biases[g] = kernel, bias
    kernel, bias = kernels, biases
  output.kernel.assign(kernel)
  output.bias.assign(bias)


def copy_weights(source, source_games: Sequence[str], target, target_games: Sequence[str],
                 checkpoint: str = '') -> Dict[str, List[str]]:
  """Copies the torso exactly and the heads of shared games from `source` to `target`.

  Returns:
    {'restored_heads': games whose head was copied, 'new_heads': the others}.
  Raises:
    ArchitectureMismatchError: naming the first torso variable (or head)
      whose shape differs.
  """
  mine, theirs = torso_variables(target), torso_variables(source)
  if len(mine) != len(theirs):
    raise ArchitectureMismatchError(
        f'train_eval.init_checkpoint {checkpoint}: the pre-trained torso has {len(theirs)} '
        f'variables, the requested one {len(mine)}')
  for new, old in zip(mine, theirs):
    if new.shape != old.shape:
      raise ArchitectureMismatchError(
          f'train_eval.init_checkpoint {checkpoint}: torso variable {new.name} has shape '
          f'{new.shape.as_list()} here but {old.shape.as_list()} in the checkpoint '
          f'({old.name})')
  for new, old in zip(mine, theirs):
    new.assign(old)
  restored = []
  for g, game in enumerate(target_games):
    if game in source_games:
      kernel, bias = _head(source._output, list(source_games).index(game))  # pylint: disable=protected-access
      _set_head(target._output, g, kernel, bias)  # pylint: disable=protected-access
      restored.append(game)
  return {'restored_heads': restored,
          'new_heads': [g for g in target_games if g not in restored]}


def initialize_from_checkpoint(init_checkpoint: str, network, requested: Mapping[str, Any],
                               game_names: Sequence[str]) -> Dict[str, Any]:
  """Initialises `network` (the new run's online network, built) from
  `init_checkpoint`; prints and returns what was restored.

  Args:
    init_checkpoint: a pre-trained run directory or checkpoint prefix.
    network: the new run's network.
    requested: the new run's ARCHITECTURE_SETTINGS and `num_actions`.
    game_names: the new run's games, in id order.
  """
  run_dir, prefix = resolve_checkpoint(init_checkpoint)
  pretrained = pretrained_settings(run_dir)
  check_architecture(pretrained, requested, prefix)
  source = make_network(pretrained['agent_type'], pretrained['games'], pretrained['multi_game'],
                        pretrained['num_actions'], pretrained['backbone'],
                        pretrained['variant'], pretrained['aggregation'],
                        bool(pretrained['feature_normalization']))
  restore_network(source, pretrained['agent_type'], prefix)
  summary = copy_weights(source, pretrained['games'], network, game_names, prefix)
  summary.update(checkpoint=prefix, pretrained_games=pretrained['games'])
  print(f'Initialised from {prefix}: torso ({len(torso_variables(network))} variables) and the '
        f'heads of {summary["restored_heads"] or "no game"}; fresh heads for '
        f'{summary["new_heads"] or "no game"}', flush=True)
  return summary
