"""Running the server: in the foreground (`hone serve`) or on a free loopback port in a thread
(tests, `hone verify`, `bench/serve.py`)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

from hone.errors import HoneError
from hone.models.load import set_threads
from hone.serve.app import create_app


def serve_forever(settings, log=print) -> None:
    """`hone serve`: load the base, register adapters, answer on settings.host:settings.port until Ctrl-C."""
    import uvicorn

    set_threads(settings.threads)
    app = create_app(settings)
    state = app.state.hone
    if not state.auth.keys():
        log("hone: no API keys configured: the server is open to anyone who can reach it "
            "(create keys with `hone keys create`, or pass --api-key)")
    names = ", ".join(sorted(state.engine.registry.adapters)) or "none"
    log(f"hone: serving {state.base_name} with adapters: {names} on http://{settings.host}:{settings.port}/v1")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app, host: str = "127.0.0.1", port: int | None = None, timeout: float = 60.0):
    """Serve `app` with a real uvicorn in a background thread; yields its base URL (http://host:port)."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="hone-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise HoneError(f"the server did not start on {host}:{port}", where="serve")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
