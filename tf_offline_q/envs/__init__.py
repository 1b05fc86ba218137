"""Environments as TF-Agents PyEnvironments: Atari 2600 (ALE) with DQN preprocessing, and MinAtar.

`make_env`, `canonical_game_name` and `valid_games` (from `games`) cover both kinds of game.
"""
from tf_offline_q.envs.atari import AtariEnvironment
from tf_offline_q.envs.atari import GAMES
from tf_offline_q.envs.atari import make_atari_env
from tf_offline_q.envs.games import canonical_game_name
from tf_offline_q.envs.games import make_env
from tf_offline_q.envs.games import valid_games
from tf_offline_q.envs.minatar import make_minatar_env
from tf_offline_q.envs.minatar import MinAtarEnvironment
