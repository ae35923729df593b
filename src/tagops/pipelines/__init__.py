"""ZenML pipelines: thin steps over the plain stage functions in :mod:`tagops.train` and friends."""
