"""Benchmarks that print numbers (`make bench`); speed goals are checked here, never in unit tests."""
