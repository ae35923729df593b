"""The prediction and feedback log, below serving and monitoring.

``schema`` (tables), ``engine`` (database URL and engine), ``writer`` (batching thread with the
``journal``), ``reader`` (the queries of the offline loop) and ``log`` (:class:`PredictionLog`, opened
from config and settings). Imports nothing from serving, monitoring or workloads.
"""
