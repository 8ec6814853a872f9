"""Peer implementations of cryofield's physics, run side by side with it by :mod:`benchmarks.peers.suite`."""
