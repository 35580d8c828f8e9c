"""``augserve`` / ``python -m augserve``: run the service with uvicorn, configured by ``AUGSERVE_*``."""

from __future__ import annotations

import uvicorn

from augserve.settings import Settings


def main() -> None:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        "augserve.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
