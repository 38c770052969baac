"""Experiments: one package per experiment, each runnable as `python -m experiments.<name>`."""
