"""Reproducible benchmarks (``make bench``) and their data generator."""
