"""Benchmarks: loxi-cni against the reference `bridge` plugin, through one harness (`python -m bench.run`)."""
