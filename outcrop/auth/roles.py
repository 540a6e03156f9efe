"""Service roles: which storage locations a caller's batch jobs may read and write.

On Bedrock a batch job (CreateModelInvocationJob) names a service role, `roleArn`: the caller must be allowed to
pass it (iam:PassRole), and the job reaches only the S3 locations the role's policy grants. Outcrop has no IAM, so
the server's owner declares the roles in the config file, each with who may pass it and the locations it reaches:

    [[roles]]
    arn = "arn:aws:iam::000000000000:role/team-a-batch"
    locations = ["s3://team-a/"]          # folders (buckets or prefixes); a local bucket folder is s3://NAME too
    principals = ["alice"]                # who may pass it: these principals ...
    groups = ["team-a"]                   # ... and the members of these groups

With no [[roles]] a job may name any role and any location the server can use (its batch folders and the S3
buckets its own credentials reach): one user, or callers who trust each other. With roles declared, a caller who
is not an administrator must name a declared role they may pass, and every location of the job must lie in one of
its folders; otherwise the call is refused with AccessDenied, saying which. Administrators may name any role and
location. Knowledge bases and agents name roles too, but only administrators create them. Roles are checked when a
job is created: a job already accepted runs to its end even if its role or its caller's groups change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.objects import valid_location


def _folder(uri: str) -> str:
    """`uri` as a folder: one trailing "/" (s3://team-a and s3://team-a/ are the same bucket, not s3://team-ab)."""
    return uri.rstrip("/") + "/"


def within(uri: str, folder: str) -> bool:
    """Whether the canonical location `uri` (s3://BUCKET/KEY, a key or a folder) lies in `folder`."""
    return _folder(uri).startswith(_folder(folder))


@dataclass(frozen=True)
class Role:
    arn: str
    locations: tuple[str, ...]
    principals: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> Role:
        errors.check_keys(raw, (f.name for f in fields(cls)), where)
        arn = raw.get("arn")
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise errors.InvalidRequest(f'{where}: arn must be a role ARN such as "arn:aws:iam::000000000000:role/x"')
        lists: dict[str, tuple[str, ...]] = {}
        for name in ("locations", "principals", "groups"):
            value = raw.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise errors.InvalidRequest(f"{where}: {name} must be a list of strings")
            lists[name] = tuple(value)
        if not lists["locations"]:
            raise errors.InvalidRequest(f'{where}: locations must name at least one folder, such as "s3://team-a/"')
        for location in lists["locations"]:
            if not valid_location(location):
                raise errors.InvalidRequest(f'{where}: location {location!r} is not a folder such as "s3://team-a/" '
                                            'or "s3://shared/team-a/"')  # fmt: skip
        return cls(arn=arn, **lists)

    def may_pass(self, who: Principal) -> bool:
        return who.name in self.principals or any(g in self.groups for g in who.groups)

    def reaches(self, uri: str) -> bool:
        """Whether the canonical location `uri` (s3://BUCKET/KEY, a key or a folder) lies in one of the folders."""
        return any(within(uri, location) for location in self.locations)


class Roles:
    """The declared roles (none: every role and location is allowed, as before roles existed)."""

    def __init__(self, roles: Sequence[Role] = ()) -> None:
        self.by_arn = {r.arn: r for r in roles}

    def check(self, who: Principal, role_arn: object, locations: Iterable[str]) -> None:
        """Refuse (AccessDenied) a job of `who` naming `role_arn` and reaching the canonical `locations`, unless
        no role is declared or `who` is an administrator."""
        if not self.by_arn or who.is_admin:
            return
        role = self.by_arn.get(role_arn) if isinstance(role_arn, str) else None
        if role is None:
            raise errors.AccessDenied(f"The role '{role_arn}' is not one this server declares ([[roles]] in its "
                                      "config), so a job cannot pass it.")  # fmt: skip
        if not role.may_pass(who):
            raise errors.AccessDenied(f"'{who.name}' may not pass the role '{role.arn}'.")
        for uri in locations:
            if not role.reaches(uri):
                raise errors.AccessDenied(f"The role '{role.arn}' does not reach {uri}: it reaches "
                                          f"{', '.join(role.locations)}.")  # fmt: skip
