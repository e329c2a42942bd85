"""kubestrap: bare-metal Kubernetes bootstrapper."""
