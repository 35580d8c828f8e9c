"""``/playground``: the spec playground's static files (a page, a stylesheet, script modules, two sample photos).

Thin on purpose: the page is a client of the public API like any other (``GET /v1/ops``, ``POST /v1/augment``),
so it shows the API's own errors and adds no server logic. The files ship inside the package
(``augserve/playground/``) so that a pip-installed server has them; nothing is fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from augserve_client.protocol.errors import ErrorCode
from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from ..errors import ServiceError

ROOT = Path(__file__).resolve().parent.parent / "playground"
# Every file the page may ask for, by its path under ROOT: a fixed list, so no request path reaches the disk.
FILES = {path.relative_to(ROOT).as_posix(): path for path in ROOT.rglob("*") if path.is_file()}

router = APIRouter(include_in_schema=False)


@router.api_route("/playground", methods=["GET", "HEAD"])
async def playground() -> RedirectResponse:
    # Relative, so the page's own relative links (and the API's, ``../v1/...``) work behind a path prefix too.
    return RedirectResponse("playground/", status_code=308)


@router.api_route("/playground/{name:path}", methods=["GET", "HEAD"])
async def playground_file(name: str) -> FileResponse:
    path = FILES.get(name or "index.html")
    if path is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no file {name!r} in the playground")
    # no-cache: the browser revalidates (ETag), so a new server version's page is never mixed with an old script.
    return FileResponse(path, headers={"Cache-Control": "no-cache"})
