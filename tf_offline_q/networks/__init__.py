"""Keras backbones (ViT, ViT-ts, Nature-DQN convnet) and TF-Agents Q / BC networks."""
from tf_offline_q.networks.aggregation import AGGREGATIONS
from tf_offline_q.networks.q_network import ActionLogitsNetwork
from tf_offline_q.networks.q_network import BACKBONES
from tf_offline_q.networks.q_network import C51QNetwork
from tf_offline_q.networks.q_network import make_backbone
from tf_offline_q.networks.vit import VARIANTS
