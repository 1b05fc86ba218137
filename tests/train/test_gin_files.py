"""Every gin file parses, and builds its agent with the paper's settings."""
import glob
import os

import gin
import pytest
import tensorflow as tf

from tf_offline_q.agents import bc
from tf_offline_q.agents import cql_c51
from tf_offline_q.envs import atari
from tf_offline_q.train import train_eval
from tests.train.conftest import REPO

GIN_DIR = os.path.join(REPO, 'gin')
# The Atari experiments of the ViT paper: the files that include Table 2
# (common.gin). The continuous-control files (dt_*, qt*, q_transformer*,
# continuous_local) are checked by their agents' tests.
def _includes_common(path):
  with open(path, encoding='utf-8') as f:
    return any(line.strip() in ("include 'common.gin'", 'include "common.gin"') for line in f)


EXPERIMENTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(GIN_DIR, '*.gin'))
                     if _includes_common(p))


def _parse(*files):
  gin.clear_config()
  gin.add_config_file_search_path(GIN_DIR)
  gin.parse_config_files_and_bindings([os.path.join(GIN_DIR, f) for f in files], [])


def _build_agent():
  q = lambda name: gin.query_parameter(f'train_eval.{name}')
  env = atari.make_atari_env('Pong', full_action_space=True)
  from tf_agents.specs import tensor_spec  # pylint: disable=g-import-not-at-top
  agent = train_eval.make_agent(
      q('agent_type'), tensor_spec.from_spec(env.time_step_spec()),
      tensor_spec.from_spec(env.action_spec()), q('backbone'), q('variant'), q('aggregation'),
      False, q('n_step'))
  env.close()
  return agent


def test_there_is_a_file_per_table_1_row_and_two_bc_files():
  assert EXPERIMENTS == ['bc_vit.gin', 'bc_vit_ts.gin', 'convnet.gin', 'vit_learned.gin',
                         'vit_mean.gin', 'vit_none.gin', 'vit_ts_learned.gin', 'vit_ts_mean.gin',
                         'vit_ts_none.gin']


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_gin_file_builds_its_agent_with_table_2_settings(name):
  _parse(name)
  agent = _build_agent()
  backbone = gin.query_parameter('train_eval.backbone')
  if name.startswith('bc_'):
    assert isinstance(agent, bc.BehavioralCloningAgent)
  else:
    assert isinstance(agent, cql_c51.CqlC51Agent)
    assert agent._cql_alpha == 0.05 and agent._n_step_update == 3 and agent._gamma == 0.99
    assert agent._target_update_period == 2000 and agent._reward_clip == 1.0
    assert float(agent.support[0]) == -10.0 and float(agent.support[-1]) == 10.0
  assert float(agent._optimizer.learning_rate) == pytest.approx(1e-5)
  net = agent._q_network if hasattr(agent, '_q_network') else agent._network
  assert net._backbone.name == backbone
  if backbone != 'convnet':
    assert net._backbone.variant.width == 384 and net._backbone.variant.depth == 12
  assert gin.query_parameter('train_eval.batch_size') == 32
  assert gin.query_parameter('train_eval.eval_steps') == 125_000
  assert gin.query_parameter('train_eval.sticky_action_prob') == 0.25


def test_local_gin_shrinks_an_experiment():
  _parse('vit_ts_learned.gin', 'local.gin')
  agent = _build_agent()
  assert agent._q_network._backbone.variant.width == 32
  assert gin.query_parameter('train_eval.num_train_steps') < 10_000
  assert gin.query_parameter('train_eval.aggregation') == 'learned'
  gin.clear_config()
