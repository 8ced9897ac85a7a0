"""Benchmarks of the ELP speech server against the alternatives users would otherwise pick."""
