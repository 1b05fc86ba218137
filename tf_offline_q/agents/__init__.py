"""TF-Agents agents: CQL + n-step C51, and behavioural cloning."""
from tf_offline_q.agents.bc import BehavioralCloningAgent
from tf_offline_q.agents.cql_c51 import CqlC51Agent
