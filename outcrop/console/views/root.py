"""`/` and `/console`: to the first page of the menu."""

from __future__ import annotations

from starlette.responses import Response

from outcrop.console import nav
from outcrop.console.web import Visit, view


async def home(visit: Visit) -> Response:
    return visit.redirect(nav.HOME)


ROUTES = [view("GET", path, home, signed_in=False) for path in ("/", "/console", "/console/")]
