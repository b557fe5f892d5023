"""egpu.kube: the client layer, the only code that talks to the API server."""
