"""The prediction and feedback log, below serving and monitoring.

``schema`` (tables), ``engine`` (database URL and engine), ``writer`` (batching thread with the
``journal``), ``reader`` (the queries of the offline loop), ``log`` (:class:`PredictionLog`, opened
from config and settings) and ``feedback`` (labelled rows resolved into training rows by trust).
Imports nothing from serving, monitoring or workloads.
"""
