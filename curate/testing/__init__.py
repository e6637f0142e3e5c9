"""Helpers for tests, benchmarks and the README demo (tiny offline model checkpoints)."""
