"""Benchmarks behind tools/benchmark_*.py."""
