"""Fuzz tier: generated and mutated inputs against the pure core, each example
within a time and memory budget (Hypothesis, fixed budget, derandomized)."""
