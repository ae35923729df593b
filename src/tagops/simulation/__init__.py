"""The loop simulation: replayed traffic over HTTP, the CLI workloads and the prediction-log reader."""
