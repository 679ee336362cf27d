"""`stream-r1 serve`: a one-page web app that streams a causal student's video chunk by chunk.

limits.py checks requests and counts concurrent generations, worker.py runs one generation in a
thread with a cancel flag, app.py is the FastAPI app (page, WebSocket, HTTP), server.py binds and runs
it with uvicorn, page.html is the whole front end (no build step).
"""

from .limits import RequestError, ServeLimits

__all__ = ["RequestError", "ServeLimits"]
