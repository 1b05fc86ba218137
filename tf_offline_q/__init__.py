"""tf_offline_q: offline Q-learning with vision transformers (CQL + C51) on TF-Agents and Reverb."""
__version__ = "0.1.0"
