"""Timing dense against pruned networks: medians, MAC counts, peak memory and the runtime each forward runs in."""
