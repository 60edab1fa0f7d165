"""The LoRA Land playground: a static page at ``/`` and ``/playground``.

The page is plain HTML, CSS and JavaScript shipped inside the package (``serving/static``),
with no build step and nothing fetched from elsewhere, so it works offline and behind a
``kubectl port-forward``. It talks to this server only through its public APIs: the TGI
stream for answers, ``/admin/adapters`` for the adapter list, ``/info`` and ``/metrics``
for the live view. Only the files named in ``ASSETS`` are served, so no request path can
reach any other file.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from loraland.serving.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE = "index.html"
#: file name -> media type of every asset the page loads.
ASSETS = {
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
# Small files that change with the package: let browsers revalidate instead of guessing.
_HEADERS = {"cache-control": "no-cache"}

router = APIRouter(tags=["playground"])


@router.get("/", include_in_schema=False)
@router.get("/playground", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / PAGE, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/playground/{asset}", include_in_schema=False)
async def asset(asset: str) -> FileResponse:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise NotFound(f"no playground asset '{asset}'")
    return FileResponse(STATIC_DIR / asset, media_type=media_type, headers=_HEADERS)
