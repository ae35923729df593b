"""tagops: tag machine-learning projects with their topic, end to end.

Importing this package is inert: it creates no files, configures no logging, starts nothing.
"""

__version__ = "0.1.0"

#: The four topics, in the fixed order every model and report uses.
LABELS: tuple[str, ...] = ("computer-vision", "mlops", "natural-language-processing", "other")

__all__ = ["LABELS", "__version__"]
