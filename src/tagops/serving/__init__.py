"""Online serving: a typed, batched, authenticated prediction API on Ray Serve or uvicorn.

:mod:`~tagops.serving.wiring` builds a replica (model, prediction log, service, batcher) from its config;
:mod:`~tagops.serving.app` serves it over HTTP; :mod:`~tagops.serving.server` runs it on uvicorn and
:mod:`tagops.serving.ray` on Ray Serve; :mod:`tagops.predlog` is the prediction log. Importing this
package imports nothing heavy.
"""
