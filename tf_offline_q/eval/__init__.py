"""Evaluation: DQN-normalised scores, rliable aggregates, policy evaluation, plots.

Modules (import the one you need; `normalization`, `metrics` and `plots` do not
import TensorFlow):
  normalization  Table 3 and `dqn_normalized_score` (random 0, DQN-Replay 1.0).
  metrics        IQM, stratified bootstrap CIs, performance profiles (rliable).
  evaluation     `evaluate_policy` with TF-Agents drivers; results files;
                 TensorBoard summaries.
  plots          learning curves, performance profiles, IQM bars (PNG).
"""
