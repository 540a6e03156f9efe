"""`/console/static/<file>`: the CSS and scripts shipped in the package (outcrop/console/static/)."""

from __future__ import annotations

from starlette.responses import Response

from outcrop import errors
from outcrop.console.render import static_file
from outcrop.console.web import Visit, view

TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8", "svg": "image/svg+xml",
         "png": "image/png", "ico": "image/x-icon"}  # fmt: skip


async def static(visit: Visit, name: str) -> Response:
    data = static_file(name)
    kind = TYPES.get(name.rsplit(".", 1)[-1])
    if data is None or kind is None:
        raise errors.NotFound(f"There is no console file '{name}'.")
    # pages name each file with a hash of its content (render.static_url): a changed file has a new URL
    cache = "public, max-age=31536000, immutable" if visit.request.query_params.get("v") else "no-cache"
    return Response(data, media_type=kind, headers={"Cache-Control": cache})


ROUTES = [view("GET", "/console/static/{name}", static, signed_in=False)]
