"""The console's views: every module in this package is one page (or the sign-in, the static files), found here
by its name, so adding a page adds a module and a template and edits nothing shared.

A module has `ROUTES` (a list of web.view(...)) and, when it builds an entry of the menu, `PAGE = "<slug>"` (a
slug of nav.NAV). Entries no module claims are served as placeholders until one does.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from starlette.responses import Response

from outcrop.api.http import Route
from outcrop.console import nav
from outcrop.console.web import Visit, view


def modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m.name}")
            for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)]  # fmt: skip


def _placeholder(item: nav.NavItem) -> Route:
    async def placeholder(visit: Visit) -> Response:
        return visit.render("placeholder.html", title=item.title, item=item)

    return view("GET", item.path, placeholder)


def routes() -> list[Route]:
    found = modules()
    built: set[str] = {m.PAGE for m in found if getattr(m, "PAGE", None)}
    unknown = built - {i.slug for i in nav.NAV}
    if unknown:
        raise LookupError(f"console views name pages the menu does not have: {sorted(unknown)} (see console/nav.py)")
    placeholders = [_placeholder(i) for i in nav.NAV if i.slug not in built]
    return [r for m in found for r in m.ROUTES] + placeholders
