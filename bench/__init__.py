"""Benchmarks of Corral against its peers; run them with ``bench/run``."""
