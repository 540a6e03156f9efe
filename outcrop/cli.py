"""`outcrop serve | models list | models add | models rm | models pull`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outcrop import __version__, config, errors
from outcrop.config import ModelSpec, Settings

if TYPE_CHECKING:
    from outcrop.api.app import App
    from outcrop.auth.keys import Keyring


def _settings(args: argparse.Namespace) -> Settings:
    return config.load(Path(args.config) if args.config else None)


def cmd_serve(args: argparse.Namespace) -> int:
    # numpy's OpenBLAS on one thread unless the user says otherwise (before numpy loads): the server's own
    # products are small or run on threads of ours (knowledge-base scans), and OpenBLAS's workers spin for a
    # while after each call, taking the cores that the guardrail encoder and llama.cpp need next (a guardrail
    # check with content filters took twice as long on 2 cores: 41 ms instead of 22)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import asyncio

    import uvicorn

    from outcrop.api import server
    from outcrop.auth.authenticate import effective_mode

    settings = _settings(args).with_overrides(host=args.host, port=args.port, auth=args.auth)
    mode = effective_mode(settings.auth, settings.host)
    app, _ = assemble(settings, mode)
    registry = app.context.registry
    for spec in registry.specs():
        if spec.engine == "llamacpp" and spec.path and not Path(spec.path).is_file():
            print(f"error: model {spec.id}: file {spec.path} does not exist", file=sys.stderr)
            return 2
    # Load the first model now, so the first request is not the one that waits for it.
    first = registry.specs()[0] if registry.specs() else None
    if first:
        asyncio.run(registry.embedder(first.id) if first.kind == "embedding" else registry.engine(first.id))
    url = f"http://{settings.host}:{settings.port}"
    print(f"Outcrop {__version__} serving on {url}")
    if mode == "local":
        print("  auth: local mode (loopback only): any credentials are accepted")
    else:
        print("  auth: keys required (create them with `outcrop keys create NAME`)")
    print(f"  console: {url}/ (in a browser)")
    print(f"  boto3:   boto3.client('bedrock-runtime', endpoint_url='{url}')")
    print(f"  AWS CLI: aws bedrock-runtime converse --endpoint-url {url} --model-id ID ...")
    print("Models:")
    for spec in registry.specs():
        aliases = f"  (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"  {spec.id}{aliases}")
    sys.stdout.flush()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM: stop listening, let answers in flight finish for shutdown_grace_s, cut off the rest (their model
    # slots are freed as they go), then shut the models down. Slow clients and big headers: outcrop.api.server.
    uvicorn_server = uvicorn.Server(server.config(app, settings.host, settings.port, log_level=args.log_level))
    uvicorn_server.run()
    return 0 if uvicorn_server.started else 3  # it could not start (the port is taken, say): uvicorn said why


def assemble(settings: Settings, mode: str, engines: dict[str, Any] | None = None) -> tuple[App, Keyring]:
    """The whole server as `outcrop serve` runs it: the store (keys, access, quotas, usage, invocation logs,
    guardrails, knowledge bases, batch jobs) behind the app. `engines` replaces the engines of some models (tests)."""
    from outcrop.api.app import build_app
    from outcrop.auth.access import AccessControl
    from outcrop.auth.authenticate import Authenticator
    from outcrop.guardrails.store import GuardrailStore
    from outcrop.jobs.store import JobStore
    from outcrop.knowledge.catalog import KnowledgeCatalog
    from outcrop.metering.invocation_log import InvocationLogger
    from outcrop.metering.quotas import Quotas
    from outcrop.metering.usage import UsageRecorder
    from outcrop.registry import Registry

    keyring = _keyring(settings)  # the store: keys, access, quotas and usage all live there
    authenticator = Authenticator(mode, keyring if mode == "keys" else None)
    registry = Registry(settings, engines)
    access = AccessControl(keyring.engine, {s.id: s.access for s in registry.specs()})
    quotas = Quotas(keyring.engine, settings.quotas)
    usage = UsageRecorder(keyring.engine) if settings.record_usage else None
    invocation_log = InvocationLogger(keyring.engine, config.home(), settings.region, settings.s3_endpoint_url)
    guardrails = GuardrailStore(keyring.engine)
    knowledge = KnowledgeCatalog(keyring.engine)
    app = build_app(settings, registry, authenticator, access, quotas, usage, invocation_log, guardrails, knowledge,
                    JobStore(keyring.engine))  # fmt: skip
    return app, keyring


def _keyring(settings: Settings) -> Keyring:
    from outcrop import store
    from outcrop.auth.keys import Keyring

    return Keyring(store.connect(config.database_url(settings)), config.key_file())


def cmd_keys_create(args: argparse.Namespace) -> int:
    keyring = _keyring(_settings(args))
    keyring.ensure_principal(args.name, admin=args.admin, group_names=tuple(args.group or ()))
    if args.guardrail:
        keyring.set_guardrail(args.name, args.guardrail)
    if args.aws:
        akid, secret = keyring.create_aws_key(args.name, args.label)
        print(f"AWS access key for {args.name} (shown once; keep the secret safe):")
        print(f"  AWS_ACCESS_KEY_ID={akid}")
        print(f"  AWS_SECRET_ACCESS_KEY={secret}")
    else:
        key_id, token = keyring.create_api_key(args.name, args.label)
        print(f"API key {key_id} for {args.name} (shown once; keep it safe):")
        print(f"  {token}")
        print("  use it as AWS_BEARER_TOKEN_BEDROCK, OPENAI_API_KEY or ANTHROPIC_API_KEY")
    return 0


def cmd_keys_guardrail(args: argparse.Namespace) -> int:
    if bool(args.guardrail) == bool(args.none):
        print("error: give a guardrail ID[:VERSION] or --none", file=sys.stderr)
        return 2
    if not _keyring(_settings(args)).set_guardrail(args.name, None if args.none else args.guardrail):
        print(f"error: no principal named {args.name}", file=sys.stderr)
        return 2
    print(f"{args.name}: " + ("no default guardrail" if args.none else f"every call goes through {args.guardrail}"))
    return 0


def cmd_keys_group(args: argparse.Namespace) -> int:
    keyring = _keyring(_settings(args))
    if args.remove:
        if not keyring.leave_group(args.name, args.group):
            print(f"error: {args.name} is not in a group {args.group}", file=sys.stderr)
            return 2
        print(f"{args.name} taken out of {args.group}")
        return 0
    if not keyring.join_group(args.name, (args.group,)):
        print(f"error: no principal named {args.name} (create a key for it first)", file=sys.stderr)
        return 2
    print(f"{args.name} added to {args.group}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    rows = [("KEY", "PRINCIPAL", "KIND", "CREATED", "LAST USED", "STATE", "LABEL")]
    for k in _keyring(_settings(args)).list():
        state = "revoked" if k.revoked_at else "active"
        used = k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "-"
        rows.append((k.id, k.principal, k.kind, k.created_at.strftime("%Y-%m-%d %H:%M"), used, state, k.label or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    if not _keyring(_settings(args)).revoke(args.key_id):
        print(f"error: no active key {args.key_id}", file=sys.stderr)
        return 2
    print(f"revoked {args.key_id}")
    return 0


def _quotas(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The quotas as the server counts them: the config file's [[quotas]] and those set at run time, in the store."""
    from outcrop.metering.quotas import Quotas

    settings = _settings(args)
    return settings, Quotas(_keyring(settings).engine, settings.quotas)


def cmd_quotas_list(args: argparse.Namespace) -> int:
    import json

    from outcrop.api.quotas_api import every_rule

    _, quotas = _quotas(args)
    rules = every_rule(quotas)
    if args.json:
        print(json.dumps(rules, indent=2))
        return 0
    rows = [("RULE", "FOR", "MODEL", "RPM", "TPM", "STREAMS", "SET BY", "SET AT")]
    for r in rules:
        subject = f"principal:{r['principal']}" if r["principal"] else f"group:{r['group']}" if r["group"] else "*"
        limits = [str(r[m]) if r[m] is not None else "-" for m in ("requestsPerMinute", "tokensPerMinute",
                                                                     "concurrentStreams")]  # fmt: skip
        when = r["createdAt"][:16].replace("T", " ") if r["createdAt"] else "-"
        rows.append((r["ruleId"] or "(config)", subject, r["model"], *limits, r["createdBy"] or "config file", when))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_quotas_set(args: argparse.Namespace) -> int:
    from outcrop.metering.quotas import QuotaRule
    from outcrop.registry import Registry

    settings, quotas = _quotas(args)
    if args.rpm is None and args.tpm is None and args.streams is None:
        print("error: set at least one limit: --rpm, --tpm or --streams", file=sys.stderr)
        return 2
    model = "*" if args.model in (None, "*") else Registry(settings).resolve(args.model)
    rule = QuotaRule(principal=args.principal, group=args.group, model=model, requests_per_minute=args.rpm,
                     tokens_per_minute=args.tpm, concurrent_streams=args.streams)  # fmt: skip
    rule_id = quotas.set_rule(rule, args.by)
    subject = f"principal {args.principal}" if args.principal else f"group {args.group}" if args.group else "everyone"
    print(f"quota {rule_id} set for {subject} on {'every model' if model == '*' else model}")
    return 0


def cmd_quotas_remove(args: argparse.Namespace) -> int:
    _, quotas = _quotas(args)
    if not quotas.remove_rule(args.rule_id):
        print(f"error: no quota {args.rule_id} set at run time (those of the config file stay)", file=sys.stderr)
        return 2
    print(f"removed {args.rule_id}")
    return 0


def _access(settings: Settings):  # type: ignore[no-untyped-def]
    from outcrop.auth.access import AccessControl
    from outcrop.registry import Registry

    registry = Registry(settings)
    return registry, AccessControl(_keyring(settings).engine, {s.id: s.access for s in registry.specs()})


def cmd_access_request(args: argparse.Namespace) -> int:
    from outcrop.auth.principal import Principal

    settings = _settings(args)
    registry, access = _access(settings)
    keyring = _keyring(settings)
    keyring.ensure_principal(args.principal)
    made = access.request(Principal(id="", name=args.principal), registry.resolve(args.model), args.reason)
    print(f"access request {made.id}: {made.principal} -> {made.model_id} ({made.status})")
    return 0


def cmd_access_list(args: argparse.Namespace) -> int:
    _, access = _access(_settings(args))
    rows = [("REQUEST", "MODEL", "PRINCIPAL", "STATUS", "REQUESTED", "DECIDED BY", "NOTE")]
    for r in access.requests(args.status):
        when = r.requested_at.strftime("%Y-%m-%d %H:%M")
        rows.append(
            (r.id, r.model_id, r.principal, r.status, when, r.decided_by or "-", r.decision_note or r.reason or "")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _decide(args: argparse.Namespace, approve: bool) -> int:
    _, access = _access(_settings(args))
    done = access.decide(args.request_id, approve, args.by, args.note)
    print(f"{done.id}: {done.status} by {done.decided_by} at {done.decided_at:%Y-%m-%d %H:%M}")
    return 0


def cmd_access_grant(args: argparse.Namespace) -> int:
    registry, access = _access(_settings(args))
    subject = f"group:{args.group}" if args.group else f"principal:{args.principal}"
    access.grant(registry.resolve(args.model), subject, args.by)
    print(f"granted {registry.resolve(args.model)} to {subject}")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    import json
    from datetime import date

    from outcrop.metering.usage import summarize

    settings = _settings(args)
    group_by = tuple(g for g in args.by.split(",") if g)
    try:
        rows = summarize(_keyring(settings).engine, group_by, date.fromisoformat(args.since) if args.since else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    tokens = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"]
    header = [*group_by, "requests", *tokens, "errors", "avg_latency_ms"]
    table = [header] + [[str(r[h]) for h in header] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(
                f"{c:<{w}}" if i < len(group_by) else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from outcrop.registry import Registry

    registry = Registry(_settings(args))
    rows = [("ID", "ENGINE", "PATH OR URL", "ALIASES")]
    for s in registry.specs():
        rows.append((s.id, s.engine, s.path or s.url or "-", ", ".join(s.aliases) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return 0


def _add(settings: Settings, spec: ModelSpec) -> None:
    taken = {n for s in settings.models for n in (s.id, *s.aliases)}
    clash = {spec.id, *spec.aliases} & taken
    if clash:
        raise errors.InvalidRequest(f"model id(s) already configured: {sorted(clash)}; remove them first")
    config.save_models(settings.config_path, [*settings.models, spec])


def cmd_models_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(args.file).expanduser().resolve()
    if not path.is_file():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    spec = ModelSpec(
        id=args.id,
        path=str(path),
        aliases=tuple(args.alias or ()),
        n_ctx=args.n_ctx,
        kind=args.kind,
        access=args.access,
    )
    _add(settings, spec)
    print(f"added {args.id} -> {path} (in {settings.config_path})")
    return 0


def cmd_models_rm(args: argparse.Namespace) -> int:
    settings = _settings(args)
    kept = [s for s in settings.models if s.id != args.id]
    if len(kept) == len(settings.models):
        print(f"error: no configured model has the id {args.id}", file=sys.stderr)
        return 2
    config.save_models(settings.config_path, kept)
    print(f"removed {args.id}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from outcrop.pull import pull

    path = pull(args.repo, revision=args.revision)
    print(f"downloaded {path}")
    if args.id:
        _add(_settings(args), ModelSpec(id=args.id, path=str(path)))
        print(f"added {args.id} -> {path}")
    return 0


def _whole(raw: str) -> int:
    """A limit: a whole number from 0 to 2**31 - 1 (the store's column)."""
    if not raw.isdigit() or int(raw) > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number from 0 to {2**31 - 1}")
    return int(raw)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="outcrop", description="A self-hosted Amazon Bedrock.")
    p.add_argument("--version", action="version", version=f"outcrop {__version__}")
    p.add_argument("--config", help="config file (default: $OUTCROP_CONFIG or $OUTCROP_HOME/config.toml)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the configured models (and the built-in one)")
    serve.add_argument("--host", help=f"address to bind (default {config.DEFAULT_HOST})")
    serve.add_argument("--port", type=int, help=f"port (default {config.DEFAULT_PORT})")
    serve.add_argument("--auth", choices=["auto", "keys", "local"], help="auto (default): keys required off loopback")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="list, add, remove or download models").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser("list", help="list served models").set_defaults(func=cmd_models_list)
    add = models.add_parser("add", help="serve a GGUF file under a model id")
    add.add_argument("file")
    add.add_argument("--id", required=True, help="model id, e.g. anthropic.claude-3-haiku-20240307-v1:0")
    add.add_argument("--alias", action="append", help="another id for the same model (repeatable)")
    add.add_argument("--n-ctx", type=int, default=8192, help="context window to allocate (default 8192)")
    add.add_argument("--kind", choices=config.KINDS, default="chat", help="chat (default) or embedding")
    add.add_argument("--access", choices=config.ACCESS_STATES, default="ga", help="ga (default), early or disabled")
    add.set_defaults(func=cmd_models_add)
    rm = models.add_parser("rm", help="stop serving a model id")
    rm.add_argument("id")
    rm.set_defaults(func=cmd_models_rm)
    pull = models.add_parser("pull", help="download a GGUF from the Hugging Face Hub")
    pull.add_argument("repo", help="REPO or REPO/FILE.gguf, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    pull.add_argument("--revision", default=None)
    pull.add_argument("--id", help="also add it under this model id")
    pull.set_defaults(func=cmd_models_pull)
    keys = sub.add_parser("keys", help="create, list or revoke credentials").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create an API key (or, with --aws, an AWS access key) for NAME")
    create.add_argument("name", help="the principal (user or application) the key belongs to")
    create.add_argument("--aws", action="store_true", help="an AWS access key pair for SigV4 (boto3, AWS CLI)")
    create.add_argument("--label", help="a note to recognise the key by")
    create.add_argument("--group", action="append", help="put the principal in this group (repeatable)")
    create.add_argument("--admin", action="store_true", help="make the principal an administrator")
    create.add_argument("--guardrail", help="ID[:VERSION]: a guardrail every call by NAME goes through")
    create.set_defaults(func=cmd_keys_create)
    key_guard = keys.add_parser("guardrail", help="set (or with --none, remove) NAME's default guardrail")
    key_guard.add_argument("name")
    key_guard.add_argument("guardrail", nargs="?", help="ID[:VERSION]")
    key_guard.add_argument("--none", action="store_true", help="remove the default guardrail")
    key_guard.set_defaults(func=cmd_keys_guardrail)
    key_group = keys.add_parser("group", help="put principal NAME in GROUP (or, with --remove, take it out)")
    key_group.add_argument("name")
    key_group.add_argument("group")
    key_group.add_argument("--remove", action="store_true", help="take NAME out of GROUP (the group stays)")
    key_group.set_defaults(func=cmd_keys_group)
    keys.add_parser("list", help="list keys (never their secrets)").set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys_revoke)

    quotas = sub.add_parser("quotas", help="list, set or remove quotas set at run time").add_subparsers(
        dest="quotas_command", required=True
    )
    quota_list = quotas.add_parser("list", help="every quota: the config file's and those set at run time")
    quota_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    quota_list.set_defaults(func=cmd_quotas_list)
    quota_set = quotas.add_parser("set", help="set a quota (replaces one for the same subject and model)")
    quota_who = quota_set.add_mutually_exclusive_group(required=True)
    quota_who.add_argument("--principal", help="the principal it limits")
    quota_who.add_argument("--group", help="the group it limits (each member counted on its own)")
    quota_who.add_argument("--everyone", action="store_true", help="it limits every principal, each on its own")
    quota_set.add_argument("--model", help='a model id or alias (default "*": every model, each counted on its own)')
    quota_set.add_argument("--rpm", type=_whole, help="requests per minute")
    quota_set.add_argument("--tpm", type=_whole, help="tokens per minute")
    quota_set.add_argument("--streams", type=_whole, help="concurrent streams")
    quota_set.add_argument("--by", default=os.environ.get("USER") or "admin", help="who sets it (default $USER)")
    quota_set.set_defaults(func=cmd_quotas_set)
    quota_rm = quotas.add_parser("remove", help="remove a quota set at run time (those of the config file stay)")
    quota_rm.add_argument("rule_id")
    quota_rm.set_defaults(func=cmd_quotas_remove)

    usage = sub.add_parser("usage", help="usage totals by principal, model and day")
    usage.add_argument(
        "--by", default="principal,model,day", help="any of principal, model, dialect, day (comma-separated)"
    )
    usage.add_argument("--since", help="only from this day on (YYYY-MM-DD)")
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    usage.set_defaults(func=cmd_usage)

    acc = sub.add_parser("access", help="early access to models: requests, decisions, grants").add_subparsers(
        dest="access_command", required=True
    )
    req = acc.add_parser("request", help="ask for access to an early-access model")
    req.add_argument("model")
    req.add_argument("--as", dest="principal", required=True, help="the principal asking")
    req.add_argument("--reason")
    req.set_defaults(func=cmd_access_request)
    lst = acc.add_parser("list", help="list access requests")
    lst.add_argument("--status", choices=["pending", "approved", "denied"])
    lst.set_defaults(func=cmd_access_list)
    for name, approve in (("approve", True), ("deny", False)):
        decide = acc.add_parser(name, help=f"{name} an access request")
        decide.add_argument("request_id")
        decide.add_argument("--by", default=os.environ.get("USER") or "admin", help="who decides (default $USER)")
        decide.add_argument("--note")
        decide.set_defaults(func=lambda a, approve=approve: _decide(a, approve))
    grant = acc.add_parser("grant", help="give a principal or a group access to an early-access model")
    grant.add_argument("model")
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument("--principal")
    who.add_argument("--group")
    grant.add_argument("--by", default=os.environ.get("USER") or "admin")
    grant.set_defaults(func=cmd_access_grant)
    from outcrop.guardrails import cli as guardrails_cli

    guardrails_cli.add_parser(sub, _with_guardrails)
    return p


def _with_guardrails(command: Callable[..., int], args: argparse.Namespace) -> int:
    from outcrop.guardrails.store import GuardrailStore

    settings = _settings(args)
    store = GuardrailStore(_keyring(settings).engine)
    return command(store, args, settings) if command.__name__ == "cmd_apply" else command(store, args)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except errors.OutcropError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
