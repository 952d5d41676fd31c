"""The Kubernetes operator (kopf): thin glue between the API server and the engine."""
