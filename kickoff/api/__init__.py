"""The HTTP API: starlette app, routes, input parsing and error mapping.

The app and its middleware are app.py's, the handlers routes.py's (task output: output.py),
request bodies parse.py's, the error mapping errors.py's, the connections protocol.py's. No
rules here (state/decide.py) and no SQL (store/, projections/).
"""
