"""Benchmark loaders (BIG-Bench Hard) and seeded synthetic skill generators."""
