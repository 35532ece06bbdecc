"""Starting and stopping a dashboard server from a benchmark or a test: a free port, a health wait, a stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    """Return once ``{url}/_stcore/health`` answers ``ok``.

    Raises:
        RuntimeError: the server exited first (the tail of ``log`` says why), or did not answer in ``timeout`` s.
    """
    tail = (lambda: log.read_text(errors="replace")[-2000:]) if log is not None else (lambda: "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the dashboard server exited with status {server.returncode}: {tail()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url}/_stcore/health did not answer 'ok' within {timeout:g} s: {tail()}")


def stop(server: subprocess.Popen) -> None:
    """Stop the server's process group (start it with ``start_new_session=True``): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if server.poll() is not None:
            return
        try:
            os.killpg(server.pid, sig)
            server.wait(wait)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
