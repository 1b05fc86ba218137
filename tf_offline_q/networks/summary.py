"""Prints Table 1 of the paper beside our parameter counts, and the ResNets of Scaled QL.

  python -m tf_offline_q.networks.summary [--num_actions 18] [--num_atoms 51] \
      [--variant S/14] [--resnet_variants resnet18,resnet34,resnet50,resnet101] [--num_games 40]

Builds every full-size (`S/14`) C51 Q-network (no training) and prints
model, our count, the paper's count and the relative difference. Then builds
each ResNet variant as a multi-game network with `--num_games` heads (the
talk's 40 games) and prints its count with one head and with all heads beside
the talk's "about 80M" for the largest (ResNet-101); `resnet.py` documents the
choices that set it (head width 640, K = 8, input 84 x 84 x 4).
"""
import argparse

from tf_offline_q import specs
from tf_offline_q.networks import multi_head
from tf_offline_q.networks import q_network

# (row name, backbone, aggregation, paper's count in millions): Table 1.
TABLE_1 = (
    ('ViT none', 'vit', 'none', 24.2),
    ('ViT mean', 'vit', 'mean', 24.2),
    ('ViT learned', 'vit', 'learned', 73.9),
    ('ViT-ts none', 'vit_ts', 'none', 45.5),
    ('ViT-ts mean', 'vit_ts', 'mean', 45.5),
    ('ViT-ts learned', 'vit_ts', 'learned', 95.3),
    ('Convnet', 'convnet', 'none', 63.5),
)


# The talk ("Performance of Scaled Q-Learning"): "~80M ResNet", the ResNet-101 trained on 40 games.
TALK_GAMES = 40
TALK_MILLIONS = {'resnet101': 80.0}
RESNET_VARIANTS = ('resnet18', 'resnet34', 'resnet50', 'resnet101')


def _count(net):
  net.create_variables()
  return sum(int(v.shape.num_elements()) for v in net.variables)


def count_parameters(backbone, aggregation, variant='S/14', num_actions=18, num_atoms=51,
                     num_games=None):
  """Number of scalars in the variables of a freshly built C51 Q-network
  (with `num_games` heads on a multi-game observation when given)."""
  obs_spec = (specs.observation_spec() if num_games is None
              else multi_head.observation_spec(num_games))
  return _count(q_network.C51QNetwork(obs_spec, specs.action_spec(num_actions),
                                      backbone=backbone, variant=variant,
                                      aggregation=aggregation, num_atoms=num_atoms))


def resnet_table(variants=RESNET_VARIANTS, num_games=TALK_GAMES, num_actions=18, num_atoms=51):
  """Rows `(variant, one_game, all_games, talk or None)`: each variant is built
  once with `num_games` heads; one game's count removes the other heads'
  variables (each head is `[F, num_actions * num_atoms]` plus its bias)."""
  rows = []
  for variant in variants:
    net = q_network.C51QNetwork(multi_head.observation_spec(num_games),
                                specs.action_spec(num_actions), backbone='resnet',
                                variant=variant, num_atoms=num_atoms)
    all_games = _count(net)
    head = sum(int(v.shape.num_elements()) for v in net.layers[-1].variables) // num_games
    talk = TALK_MILLIONS.get(variant)
    rows.append((variant, all_games - (num_games - 1) * head, all_games,
                 None if talk is None else talk * 1e6))
    del net
  return rows


def format_resnet_table(rows, num_games=TALK_GAMES) -> str:
  lines = [f'| ResNet | Ours, 1 game | Ours, {num_games} games | Talk | Difference |',
           '|---|---:|---:|---:|---:|']
  for variant, one, every, talk in rows:
    talk_text, diff = ('', '') if talk is None else (f'~{talk / 1e6:.0f}M',
                                                     f'{(every - talk) / talk:+.1%}')
    lines.append(f'| {variant} | {one / 1e6:.2f}M | {every / 1e6:.2f}M | {talk_text} | {diff} |')
  return '\n'.join(lines)


def table(num_actions=18, num_atoms=51, variant='S/14'):
  """Rows `(name, ours, paper, relative_difference)` for the seven Table 1 models."""
  rows = []
  for name, backbone, aggregation, paper_millions in TABLE_1:
    ours = count_parameters(backbone, aggregation, variant, num_actions, num_atoms)
    paper = paper_millions * 1e6
    rows.append((name, ours, paper, (ours - paper) / paper))
  return rows


def format_table(rows) -> str:
  lines = ['| Model | Ours | Paper (Table 1) | Difference |', '|---|---:|---:|---:|']
  for name, ours, paper, diff in rows:
    lines.append(f'| {name} | {ours / 1e6:.2f}M | {paper / 1e6:.1f}M | {diff:+.1%} |')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num_actions', type=int, default=18)
  parser.add_argument('--num_atoms', type=int, default=51)
  parser.add_argument('--variant', default='S/14')
  parser.add_argument('--resnet_variants', default=','.join(RESNET_VARIANTS),
                      help='comma-separated ResNet variants (resnet18, resnet34, resnet50, '
                           'resnet101, micro); empty: none')
  parser.add_argument('--num_games', type=int, default=TALK_GAMES,
                      help='heads of the multi-game ResNets (the talk: 40 games)')
  args = parser.parse_args(argv)
  print(format_table(table(args.num_actions, args.num_atoms, args.variant)))
  print('\nConvnet: the Nature-DQN network (3 convs + dense 512) the paper describes has '
        '2.16M parameters; 63.5M is not reachable with that design.')
  variants = [v for v in args.resnet_variants.split(',') if v]
  if variants:
    print(f'\nScaled Q-learning ResNets (C51 head per game, {args.num_actions} actions x '
          f'{args.num_atoms} atoms, 84x84x4 input, learned spatial embeddings K = 8, one shared '
          'hidden layer of 640; see resnet.py):\n')
    print(format_resnet_table(resnet_table(variants, args.num_games, args.num_actions,
                                           args.num_atoms), args.num_games))


if __name__ == '__main__':
  main()
