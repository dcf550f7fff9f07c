"""Benchmarks of the labelling pipeline (`python -m bench.bench`)."""
