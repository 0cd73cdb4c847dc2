"""Benchmarks for the budgets of docs/budgets.md (run them all with ``python -m benchmarks``)."""
