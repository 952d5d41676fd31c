"""The engine: pure sweep logic (config, search, bands, stop decisions, savings). No I/O, no Kubernetes."""
