"""The HTTP API: starlette app, routes, input parsing and error mapping."""
