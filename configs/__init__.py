"""Configs: one file per runnable setup, each with `get_config(arg=None)`."""
