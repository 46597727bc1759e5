"""Experiment tracking: the explicit `Client` and the fluent API built on it."""
