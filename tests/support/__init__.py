"""Real parts the suites share: a uvicorn server, worker processes, Redis, websocket and browser clients."""
