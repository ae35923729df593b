"""Workloads: train, tune, evaluate, batch predict, monitor, retrain, promote — each one list of stages."""
