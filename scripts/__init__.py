"""Seed data, demo traffic, load generator and benchmarks."""
