"""MLflow "models from code" definition of the tagops pyfunc.

MLflow executes this file when it loads a logged tagops model, so the model needs no pickled Python object:
the weights are read by tagops' own safe loaders from the ``model`` artifact folder. tagops itself never
imports this module.
"""

from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel


class TagopsPyfunc(PythonModel):  # type: ignore[misc]
    """Adapts :class:`tagops.inference.predictor.Predictor` to MLflow's pyfunc interface."""

    def load_context(self, context):  # type: ignore[no-untyped-def]
        """Load the saved model folder shipped as the ``model`` artifact."""
        from tagops.inference.predictor import Predictor

        self.predictor = Predictor.from_directory(Path(context.artifacts["model"]))

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # MLflow reads hints
        """DataFrame with ``title`` and ``description`` in; tag, confidence and probabilities out."""
        import pandas as pd

        frame = pd.DataFrame(model_input)
        descriptions = frame["description"].fillna("") if "description" in frame else [""] * len(frame)
        results = self.predictor.predict(frame["title"].fillna("").tolist(), list(descriptions))
        return pd.DataFrame(
            [
                {
                    "tag": r["tag"],
                    "confidence": r["confidence"],
                    **{f"p_{k}": v for k, v in r["probabilities"].items()},
                }
                for r in results
            ]
        )


mlflow.models.set_model(TagopsPyfunc())
