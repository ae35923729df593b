"""The web console: pages served by the prediction app itself, at ``/``, that work without JavaScript.

``/`` tags a project from a form and takes feedback on the answer; ``/console/model`` is the served
model's card (provenance, holdout scores per class, confusion matrix, calibration); ``/console/monitoring``
shows the served, shadow and canary models and, to an admin key, the recent monitor windows, the promotion
history and the rollout's record. Every form goes through the API's own code (:class:`ConsoleApi`): the
same key checks, bounds, labels and feedback limits. Pages are rendered by Jinja2 with autoescaping, load
only this server's own stylesheet and icon, and carry a Content-Security-Policy that forbids anything else.
"""

from tagops.serving.console.routes import ConsoleApi, add_console
from tagops.serving.console.sources import ConsoleSources

__all__ = ["ConsoleApi", "ConsoleSources", "add_console"]
