"""Benchmarks comparing the standard library's poplib with cpoplib.

Run from the repository root with ``python -m benchmarks`` (see
``benchmarks/README.md``).
"""
