"""Crash/fault soak harness (see crashpoints.py) shared by tests and benchmarks/soak.py."""
