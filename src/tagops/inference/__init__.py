"""Inference on a saved model: the predictor, batch file I/O and loading a model by reference."""
