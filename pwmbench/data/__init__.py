"""Offline data in TD-MPC2's format: chunk files, a memory-mapped sequence sampler, an inspector and a collector."""
