"""Model-based analysis of runs (diagnostics, rankers, reward models, the round monitor)."""
