"""`outcrop guardrails ...`: guardrail definitions as files (JSON or TOML), in the store `outcrop serve` uses.

A file holds CreateGuardrail's body (Bedrock's member names: name, blockedInputMessaging,
contentPolicyConfig, ...) and, optionally, `constitution`. `get` writes the same shape back, so a
definition can be exported, edited and updated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from outcrop import errors
from outcrop.guardrails.store import GuardrailStore


def _read(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise errors.InvalidRequest(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except ValueError as exc:  # TOMLDecodeError is a ValueError
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise errors.InvalidRequest(f"{path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise errors.InvalidRequest(f"{path} must hold one object: a guardrail definition.")
    return data


def _write(data: dict[str, Any], path: str | None) -> None:
    if path and path.endswith(".toml"):
        import tomli_w

        Path(path).write_text(tomli_w.dumps(data))
        return
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if path:
        Path(path).write_text(text)
    else:
        sys.stdout.write(text)


def _checked(body: dict[str, Any], operation: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from outcrop.api.bedrock.guardrails import check_body, definition

    return definition(check_body(body, operation, extra))


def cmd_create(store: GuardrailStore, args: argparse.Namespace) -> int:
    made = store.create(_checked(_read(args.file), "CreateGuardrail"))
    print(f"created guardrail {made.id} ({made.name}), version DRAFT")
    return 0


def cmd_update(store: GuardrailStore, args: argparse.Namespace) -> int:
    done = store.update(args.id, _checked(_read(args.file), "UpdateGuardrail", {"guardrailIdentifier": args.id}))
    print(f"updated the DRAFT of {done.id} ({done.name}); published versions are unchanged")
    return 0


def cmd_get(store: GuardrailStore, args: argparse.Namespace) -> int:
    _write(store.get(args.id, args.version).config, args.output)
    return 0


def cmd_list(store: GuardrailStore, args: argparse.Namespace) -> int:
    rows = [("ID", "NAME", "VERSION", "UPDATED")]
    for g in store.list(args.id):
        rows.append((g.id, g.name, g.version, g.updated_at.strftime("%Y-%m-%d %H:%M")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_version(store: GuardrailStore, args: argparse.Namespace) -> int:
    made = store.create_version(args.id, args.description)
    print(f"published version {made.version} of {made.id}")
    return 0


def cmd_delete(store: GuardrailStore, args: argparse.Namespace) -> int:
    store.delete(args.id, args.version)
    print(f"deleted {'version ' + args.version + ' of ' if args.version else ''}{args.id}")
    return 0


def cmd_enforce(store: GuardrailStore, args: argparse.Namespace) -> int:
    """Set the account-level enforced guardrail (replacing the one there is), as PutEnforcedGuardrailConfiguration."""
    guarding = {"system": args.system, "messages": args.messages}
    config: dict[str, Any] = {"guardrailIdentifier": args.id, "guardrailVersion": args.version,
                              "selectiveContentGuarding": guarding}  # fmt: skip
    if args.include or args.exclude:
        config["modelEnforcement"] = {"includedModels": args.include or ["ALL"], "excludedModels": args.exclude or []}
    body: dict[str, Any] = {"guardrailInferenceConfig": config}
    existing = store.enforced.all()
    if existing:
        body["configId"] = existing[0].config_id
    from outcrop.api.bedrock.guardrails import check_body

    done = store.enforced.put(check_body(body, "PutEnforcedGuardrailConfiguration"), "cli")
    print(f"every call now goes through {done.guardrail_id} version {done.version} (configuration {done.config_id})")
    return 0


def cmd_enforced(store: GuardrailStore, args: argparse.Namespace) -> int:
    # no ARN: the region is the server's setting, not the store's
    shown = [{k: v for k, v in e.to_output("").items() if k != "guardrailArn"} for e in store.enforced.all()]
    _write({"guardrailsConfig": shown}, None)
    return 0


def cmd_unenforce(store: GuardrailStore, args: argparse.Namespace) -> int:
    for e in store.enforced.all():
        store.enforced.delete(e.config_id)
        print(f"removed the enforced guardrail {e.guardrail_id} version {e.version} (configuration {e.config_id})")
    return 0


def cmd_apply(store: GuardrailStore, args: argparse.Namespace, settings: Any) -> int:
    """Run a guardrail on a text here, without a server: what ApplyGuardrail would answer."""
    from outcrop.auth.principal import LOCAL
    from outcrop.guardrails.assess import Checker
    from outcrop.guardrails.runtime import Guardrails, registry_embed
    from outcrop.inference import Inference
    from outcrop.registry import Registry

    text = sys.stdin.read() if args.text == "-" else args.text

    async def run() -> dict[str, Any]:
        registry = Registry(settings)
        inference = Inference(registry)

        async def judge(request: Any) -> Any:
            return await inference.complete(request, LOCAL, guard=False)

        rails = Guardrails(store, Checker(registry_embed(registry), judge))
        try:
            compiled = await rails.compiled(args.id, args.version or "DRAFT")
            outcome = await rails.apply(compiled, args.source, [(text, ())], "FULL" if args.full else "INTERVENTIONS")
        finally:
            await registry.close()
        shown = [outcome.message] if outcome.blocked else list(outcome.texts)
        return {"action": outcome.action, "outputs": shown, "assessments": [outcome.assessment]}

    result = asyncio.run(run())
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["action"] == "NONE" else 1


def add_parser(sub: Any, run: Callable[[Callable[..., int], argparse.Namespace], int]) -> None:
    """`run(command, args)` opens the store from the usual settings and calls `command(store, args[, settings])`."""
    g = sub.add_parser("guardrails", help="define, version and try guardrails (definitions as JSON/TOML files)")
    cmds = g.add_subparsers(dest="guardrails_command", required=True)
    create = cmds.add_parser("create", help="create a guardrail from FILE (CreateGuardrail's body, .json or .toml)")
    create.add_argument("file", help="the definition; - reads standard input")
    create.set_defaults(func=lambda a: run(cmd_create, a))
    update = cmds.add_parser("update", help="replace ID's DRAFT with FILE; published versions never change")
    update.add_argument("id")
    update.add_argument("file")
    update.set_defaults(func=lambda a: run(cmd_update, a))
    get = cmds.add_parser("get", help="write ID's definition as a file (JSON, or TOML for a .toml --output)")
    get.add_argument("id")
    get.add_argument("--version", help="a published version (default: DRAFT)")
    get.add_argument("--output", "-o", help="write here instead of standard output")
    get.set_defaults(func=lambda a: run(cmd_get, a))
    listing = cmds.add_parser("list", help="list guardrails, or with ID its versions")
    listing.add_argument("id", nargs="?")
    listing.set_defaults(func=lambda a: run(cmd_list, a))
    version = cmds.add_parser("version", help="publish ID's DRAFT as the next numbered version")
    version.add_argument("id")
    version.add_argument("--description")
    version.set_defaults(func=lambda a: run(cmd_version, a))
    delete = cmds.add_parser("delete", help="delete a guardrail, or one published --version of it")
    delete.add_argument("id")
    delete.add_argument("--version")
    delete.set_defaults(func=lambda a: run(cmd_delete, a))
    enforce = cmds.add_parser("enforce", help="make every call on the server go through ID's VERSION (account-level)")
    enforce.add_argument("id")
    enforce.add_argument("version", help="a published version number")
    enforce.add_argument("--include", action="append", metavar="MODEL", help="only these models (repeatable)")
    enforce.add_argument("--exclude", action="append", metavar="MODEL", help="not these models (repeatable)")
    for where in ("system", "messages"):
        enforce.add_argument(f"--{where}", choices=["COMPREHENSIVE", "SELECTIVE"], default="COMPREHENSIVE",
                             help=f"read the whole {where} (default) or only what the caller marked")  # fmt: skip
    enforce.set_defaults(func=lambda a: run(cmd_enforce, a))
    enforced = cmds.add_parser("enforced", help="show the account-level enforced guardrail (JSON)")
    enforced.set_defaults(func=lambda a: run(cmd_enforced, a))
    unenforce = cmds.add_parser("unenforce", help="remove the account-level enforced guardrail")
    unenforce.set_defaults(func=lambda a: run(cmd_unenforce, a))
    apply = cmds.add_parser("apply", help="check TEXT against a guardrail here; exit 1 if it intervenes")
    apply.add_argument("id")
    apply.add_argument("text", help="the text; - reads standard input")
    apply.add_argument("--version", help="default: DRAFT")
    apply.add_argument("--source", choices=["INPUT", "OUTPUT"], default="INPUT")
    apply.add_argument("--full", action="store_true", help="report every rule, not only those that fired")
    apply.set_defaults(func=lambda a: run(cmd_apply, a))
