"""Environments: Atari 2600 (ALE) with DQN preprocessing as TF-Agents PyEnvironments."""
from tf_offline_q.envs.atari import AtariEnvironment
from tf_offline_q.envs.atari import canonical_game_name
from tf_offline_q.envs.atari import GAMES
from tf_offline_q.envs.atari import make_atari_env
from tf_offline_q.envs.atari import valid_games
