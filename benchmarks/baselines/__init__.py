"""Baseline servers the benchmarks compare against (naive per-request ``transformers``)."""
