"""Serve the Flask app with gunicorn, a production WSGI server.

Threaded workers let several clients stream at once; SQLite releases the GIL
while it steps the cursor, so threads overlap well.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from flows_api.app import create_app


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app


def serve(
    db_path: Path,
    host: str,
    port: int,
    *,
    api_key: str | None,
    workers: int,
    threads: int,
    max_limit: int,
    default_limit: int,
    access_log: bool = False,
) -> None:
    """Run the API until SIGTERM/SIGINT."""
    app = create_app(db_path, api_key=api_key, max_limit=max_limit, default_limit=default_limit)
    logging.getLogger("flows_api").info("serving %s on http://%s:%d", db_path, host, port)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 300,
        "graceful_timeout": 5,
        "keepalive": 30,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "flows-api",
    }
    _Gunicorn(app, options).run()
