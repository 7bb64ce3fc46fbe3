"""The Kubernetes operator: TaskQueue resources in, scaled worker Deployments out."""
