"""``python -m augserve``: the ``augserve`` command line (:mod:`augserve.cli`), and the one place uvicorn starts."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from augserve.settings import Settings


def run_server(settings: Settings) -> None:
    """uvicorn with the app factory. ``create_app()`` reads ``Settings()`` from ``AUGSERVE_*`` in every worker
    process, so whoever calls this has put ``settings`` into the environment (``augserve serve`` does)."""
    import uvicorn

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker writes its metrics here and a scrape adds them up (augserve.metrics); a fresh folder per
        # start, so counters begin at zero as a single process's do.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="augserve-metrics-")
    uvicorn.run(
        "augserve.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        http="augserve.http_guard:GuardedHttpToolsProtocol",  # header size and time, body rate: see there
        timeout_graceful_shutdown=5,
    )


def main() -> None:
    from augserve.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
