"""Ray Serve plumbing: the deployment, the Ray environment and HAProxy ingress set-up, the server start."""
