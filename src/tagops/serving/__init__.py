"""Online serving: a typed, batched, authenticated prediction API on Ray Serve or uvicorn.

``create_app`` (:mod:`~tagops.serving.app`) builds the FastAPI app; :mod:`~tagops.serving.ray.deployment`
wraps it in a Ray Serve deployment; :mod:`tagops.predlog` is the prediction log; ``tagops serve`` runs it.
Importing this package imports nothing heavy.
"""
