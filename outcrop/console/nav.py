"""The navigation: every page of the console, in the order the menu shows them.

A page is built by a module under views/ that names its entry (`PAGE = "guardrails"`); an entry no module claims
is served as a placeholder. An `admin` entry is for administrators only: the menu hides it from everyone else
and web.view() refuses every path under it to them, whatever the view module declares.
"""

from __future__ import annotations

from dataclasses import dataclass

from outcrop.auth.principal import Principal


@dataclass(frozen=True)
class NavItem:
    slug: str
    title: str
    path: str
    admin: bool = False  # administrators only: the page and every path under it

    def covers(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")


NAV: tuple[NavItem, ...] = (
    NavItem("models", "Models", "/console/models"),
    NavItem("playground", "Playground", "/console/playground"),
    NavItem("guardrails", "Guardrails", "/console/guardrails"),
    NavItem("knowledge", "Knowledge bases", "/console/knowledge-bases"),
    NavItem("batch", "Batch", "/console/batch"),
    NavItem("keys", "Keys", "/console/keys", admin=True),
    NavItem("usage", "Usage", "/console/usage"),
)

HOME = NAV[0].path


def item(slug: str) -> NavItem:
    return next(i for i in NAV if i.slug == slug)


def admin_only(path: str) -> bool:
    """Whether `path` lies under an administrators' entry."""
    return any(i.admin and i.covers(path) for i in NAV)


def visible(principal: Principal) -> list[NavItem]:
    return [i for i in NAV if principal.is_admin or not i.admin]


def current(path: str) -> str | None:
    """The slug of the entry `path` belongs to, for aria-current."""
    return next((i.slug for i in NAV if i.covers(path)), None)
