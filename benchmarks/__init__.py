"""Benchmarks for the agent-side budgets of DESIGN.md (run them all with ``python -m benchmarks``)."""
