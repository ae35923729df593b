"""MLflow adapter: tracking, the model registry, model references and verified downloads."""
