"""The HTTP API: FastAPI app, JWT auth, rate limits, routes, event stream."""
