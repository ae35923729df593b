"""Ray Serve plumbing: the deployment, the HAProxy ingress bind helper and the Ray server start."""
