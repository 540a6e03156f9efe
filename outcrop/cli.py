"""`outcrop serve | models list | models add | models rm | models pull`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from outcrop import __version__, config, errors
from outcrop.config import ModelSpec, Settings


def _settings(args: argparse.Namespace) -> Settings:
    return config.load(Path(args.config) if args.config else None)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    import uvicorn

    from outcrop.api.app import build_app
    from outcrop.registry import Registry

    settings = _settings(args).with_overrides(host=args.host, port=args.port)
    registry = Registry(settings)
    for spec in registry.specs():
        if spec.engine == "llamacpp" and spec.path and not Path(spec.path).is_file():
            print(f"error: model {spec.id}: file {spec.path} does not exist", file=sys.stderr)
            return 2
    # Load the first model now, so the first request is not the one that waits for it.
    first = registry.specs()[0].id if registry.specs() else None
    if first:
        asyncio.run(registry.engine(first))
    app = build_app(settings, registry)
    url = f"http://{settings.host}:{settings.port}"
    print(f"Outcrop {__version__} serving on {url}")
    print(f"  boto3:   boto3.client('bedrock-runtime', endpoint_url='{url}')")
    print(f"  AWS CLI: aws bedrock-runtime converse --endpoint-url {url} --model-id ID ...")
    print("Models:")
    for spec in registry.specs():
        aliases = f"  (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"  {spec.id}{aliases}")
    sys.stdout.flush()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False)
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
    spec = ModelSpec(id=args.id, path=str(path), aliases=tuple(args.alias or ()), n_ctx=args.n_ctx)
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="outcrop", description="A self-hosted Amazon Bedrock.")
    p.add_argument("--version", action="version", version=f"outcrop {__version__}")
    p.add_argument("--config", help="config file (default: $OUTCROP_CONFIG or $OUTCROP_HOME/config.toml)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the configured models (and the built-in one)")
    serve.add_argument("--host", help=f"address to bind (default {config.DEFAULT_HOST})")
    serve.add_argument("--port", type=int, help=f"port (default {config.DEFAULT_PORT})")
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
    add.set_defaults(func=cmd_models_add)
    rm = models.add_parser("rm", help="stop serving a model id")
    rm.add_argument("id")
    rm.set_defaults(func=cmd_models_rm)
    pull = models.add_parser("pull", help="download a GGUF from the Hugging Face Hub")
    pull.add_argument("repo", help="REPO or REPO/FILE.gguf, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    pull.add_argument("--revision", default=None)
    pull.add_argument("--id", help="also add it under this model id")
    pull.set_defaults(func=cmd_models_pull)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except errors.OutcropError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
