"""ZenML pipelines: thin steps over the plain stage functions in :mod:`tagops.workloads.train` and friends."""
