"""Datasets, solver, training, evaluation and the paper's tables (the `fcn` command)."""
