"""Load the checkpoint, bind the address and run the app with uvicorn (in the foreground or a thread).

The web packages are imported only when a server starts, so a missing checkpoint is reported the
same way whether or not the `serve` extra is installed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..common.weights import SHORT_NAMES, WEIGHTS_DIR, CheckpointError
from ..generation.pipeline import VideoPipeline

log = logging.getLogger(__name__)


class ServeError(ValueError):
    """A server that cannot start; the message names the problem and the fix."""


def load_pipeline(name_or_path: str | os.PathLike, device: str = "cpu", dtype: str | None = None) -> VideoPipeline:
    """The pipeline to serve on `device`; a short name whose weights are not shipped here gets its own message."""
    key = str(name_or_path)
    if key in SHORT_NAMES and not (WEIGHTS_DIR / SHORT_NAMES[key]).exists():
        raise CheckpointError(
            f"checkpoint {key!r} is not shipped in this install ({WEIGHTS_DIR / SHORT_NAMES[key]} is missing); "
            "pass --checkpoint PATH to a student, e.g. RUN_DIR/student.safetensors from `stream-r1 distill`"
        )
    pipe = VideoPipeline.from_checkpoint(name_or_path, device, dtype)
    if not pipe.model.cfg.causal:
        log.warning("%s is bidirectional: each video arrives as one chunk, not streamed", key)
    return pipe


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port (port 0 picks a free one); ServeError if that address is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ServeError(f"cannot resolve --host {host!r} ({err.strerror}); use an address like 127.0.0.1") from err
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({err.strerror}); pass another --port or --host") from err
    if not ipaddress.ip_address(address[0]).is_loopback:
        log.warning("listening on %s: anyone who can reach this machine can generate videos", address[0])
    return sock


def _uvicorn_server(app, log_level: str):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, ws="websockets-sansio", lifespan="off"))


def run_server(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C)."""
    sock = bind(host, port)
    shown = sock.getsockname()
    print(f"stream-r1 serve: open http://{host if ':' not in host else f'[{host}]'}:{shown[1]}/  (Ctrl-C stops)")
    _uvicorn_server(app, log_level).run(sockets=[sock])


@contextmanager
def background_server(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Run the app in a thread for tests and scripts; yields its base URL and stops it on exit."""
    sock = bind(host, port)
    server = _uvicorn_server(app, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="stream-r1-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ServeError(f"the server on {host}:{sock.getsockname()[1]} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
