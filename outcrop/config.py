"""One typed settings object, read once from the config file and passed down.

The config file is TOML, at `$OUTCROP_CONFIG`, else `$OUTCROP_HOME/config.toml` (OUTCROP_HOME
defaults to ~/.outcrop). Every key is optional:

    [server]
    host = "127.0.0.1"
    port = 8300
    region = "us-east-1"
    builtin_model = true          # also serve the built-in tiny model as outcrop.tiny-chat-v1:0
    builtin_embedding_model = true  # and all-MiniLM-L6-v2 as outcrop.all-minilm-l6-v2 (if installed)
    auth = "auto"                 # auto: no keys needed on loopback, keys required elsewhere | keys | local
    database = "postgresql+psycopg://outcrop@db/outcrop"   # default: SQLite in $OUTCROP_HOME
    record_usage = true           # a usage record for every invocation (outcrop usage)
    s3_endpoint_url = "http://127.0.0.1:9000"   # invocation logs to this S3-compatible store (default: a folder)
    max_request_mib = 16          # larger request bodies are refused (413) before they are read
    shutdown_grace_s = 30         # on SIGTERM, answers in flight may finish for this long, then are cut off
    max_header_kib = 32           # larger request headers are refused (431)
    header_timeout_s = 10         # a client that takes longer to send its request line and headers is dropped
    body_timeout_s = 30           # a body that stalls longer than this between parts is refused (408)
    keep_alive_s = 5              # idle keep-alive connections are closed after this
    max_messages = 2000           # messages / tools / content blocks one request may hold (400 beyond)
    max_tools = 512
    max_content_blocks = 10000
    allowed_origins = ["http://localhost:3000"]   # web pages that may call the API from a browser (CORS)
    batch_dir = "/srv/outcrop/batch"   # local folders standing for buckets of batch jobs (default $OUTCROP_HOME/batch)
    batch_files_uri = "s3://my-bucket/openai-files/"   # where /v1/files keeps files (default <batch_dir>/outcrop-files)
    max_file_mib = 200            # larger uploads to /v1/files are refused (413)

    [server.agent_lambda_urls]    # agents' action groups run by a Lambda ARN: POSTed to this local endpoint instead
    "arn:aws:lambda:us-east-1:123456789012:function:orders" = "http://127.0.0.1:9001/invoke"

    [[models]]
    id = "anthropic.claude-3-haiku-20240307-v1:0"   # any Bedrock-style id
    path = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    aliases = ["meta.llama3-1-8b-instruct-v1:0"]
    n_ctx = 8192                  # context per slot: the longest prompt + answer of one request
    parallel = 4                  # requests decoded at once (default: up to 8, fewer for long contexts)
    max_queue = 8                 # requests waiting beyond those running; more -> ThrottlingException
    max_tokens = 4096             # answer length when a request names none (default 4096)
    prompt_cache_mib = 256        # host RAM for prompt prefixes evicted from the slots (0: off)
    # n_threads = 4, n_batch = 512, prefill_chunk = 0 (auto), repack = true|false, flash_attn = false,
    # chat_template = "...",
    # engine = "llamacpp" | "echo" | "sentence-transformers" | "openai", kind = "chat" | "embedding"

    [[models]]                    # forward to an OpenAI-compatible server already running
    id = "meta.llama3-1-70b-instruct-v1:0"
    engine = "openai"
    url = "http://127.0.0.1:8000/v1"
    upstream_model = "meta-llama/Llama-3.1-70B-Instruct"
    api_key_env = "VLLM_API_KEY"

    [[quotas]]                    # see outcrop.metering.quotas
    principal = "alice"           # or group = "beta"; neither: everyone
    model = "*"
    requests_per_minute = 60
    tokens_per_minute = 100000
    concurrent_streams = 4

    [[roles]]                     # see outcrop.auth.roles: what batch jobs passing this role may reach
    arn = "arn:aws:iam::000000000000:role/team-a-batch"
    locations = ["s3://team-a/"]
    principals = ["alice"]
    groups = ["team-a"]
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from outcrop.auth.roles import Role
from outcrop.errors import InvalidRequest, check_keys
from outcrop.metering.quotas import QuotaRule

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8300
ENGINES = ("llamacpp", "echo", "sentence-transformers", "openai")
KINDS = ("chat", "embedding")
ACCESS_STATES = ("ga", "early", "disabled")


@dataclass(frozen=True)
class ModelSpec:
    id: str
    path: str | None = None
    engine: str = "llamacpp"
    kind: str = "chat"  # chat | embedding
    access: str = "ga"  # ga (everyone) | early (granted principals and groups) | disabled
    aliases: tuple[str, ...] = ()
    n_ctx: int = 8192
    n_threads: int | None = None
    n_batch: int = 512
    max_queue: int = 8
    parallel: int | None = None  # llamacpp: slots decoded together (default: engines.llamacpp.default_parallel)
    max_tokens: int | None = None  # answer length when a request names none (default 4096)
    prefill_chunk: int = 0  # llamacpp: prompt tokens per step beside running generations (0: auto)
    prompt_cache_mib: int = 256  # llamacpp: host RAM for evicted prompt prefixes (0: off)
    repack: bool | None = None  # llamacpp: weight repacking (default: on, off on CPUs with AMX)
    flash_attn: bool = False  # llamacpp: flash attention (slower on CPUs, so off by default)
    chat_template: str | None = None
    # engine = "openai": forward to an OpenAI-compatible server (vLLM, Ollama, llama-server, ...)
    url: str | None = None  # its base URL, e.g. http://127.0.0.1:11434/v1
    upstream_model: str | None = None  # the model name there (default: id)
    api_key_env: str | None = None  # the environment variable that holds its API key, if it wants one
    guardrail: str | None = None  # `id[:version]` of a guardrail every call to this model goes through

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> ModelSpec:
        check_keys(raw, (f.name for f in fields(cls)), where)
        if not isinstance(raw.get("id"), str) or not raw["id"]:
            raise InvalidRequest(f"{where}: every model needs an `id`")
        spec = cls(**{**raw, "aliases": tuple(raw.get("aliases", ()))})
        if spec.engine not in ENGINES:
            raise InvalidRequest(f"{where}: engine must be one of {ENGINES}, not {spec.engine!r}")
        if spec.access not in ACCESS_STATES:
            raise InvalidRequest(f"{where}: access must be one of {ACCESS_STATES}, not {spec.access!r}")
        if spec.kind not in KINDS:
            raise InvalidRequest(f"{where}: kind must be one of {KINDS}, not {spec.kind!r}")
        if spec.engine == "sentence-transformers" and spec.kind != "embedding":
            raise InvalidRequest(f'{where}: a sentence-transformers model is an embedding model (kind = "embedding")')
        if spec.engine == "openai" and not spec.url:
            raise InvalidRequest(f"{where}: an openai (upstream) model needs a `url`, e.g. http://127.0.0.1:8000/v1")
        for key in ("parallel", "max_tokens"):
            value = getattr(spec, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidRequest(f"{where}: {key} must be a whole number of at least 1, not {value!r}")
        for key in ("prefill_chunk", "prompt_cache_mib", "max_queue"):
            value = getattr(spec, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidRequest(f"{where}: {key} must be a whole number of at least 0, not {value!r}")
        if spec.engine == "llamacpp" and not spec.path:
            raise InvalidRequest(f"{where}: a llamacpp model needs a `path` to a GGUF file")
        return spec

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None and v != () and k != "id"}
        out["aliases"] = list(self.aliases)
        defaults = ModelSpec(id="")
        return {"id": self.id, **{k: v for k, v in out.items() if v != getattr(defaults, k, None) or k == "path"}}


@dataclass(frozen=True)
class Settings:
    config_path: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    region: str = "us-east-1"
    builtin_model: bool = True
    builtin_embedding_model: bool = True
    auth: str = "auto"  # auto | keys | local (see outcrop.auth.authenticate)
    database: str | None = None  # SQLAlchemy URL; default sqlite:///$OUTCROP_HOME/outcrop.db
    record_usage: bool = True  # write a usage record for every invocation
    s3_endpoint_url: str | None = None  # an S3-compatible store for invocation logs (default: a local folder)
    max_request_mib: int = 16  # request bodies larger than this are refused (413) before they are read
    allowed_origins: tuple[str, ...] = ()  # web origins that may call the API from a browser (CORS); none by default
    shutdown_grace_s: float = 30.0  # on SIGTERM, in-flight answers may finish for this long before they are cut off
    max_header_kib: int = 32  # a request whose headers are larger is refused (431)
    header_timeout_s: float = 10.0  # a client must send its request line and headers within this (else dropped)
    body_timeout_s: float = 30.0  # the longest wait for the next part of a request body (else 408)
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_messages: int = 2000  # messages in one conversation
    max_tools: int = 512  # tools offered in one request
    max_content_blocks: int = 10000  # content blocks of all messages of one request together
    knowledge_dir: str | None = None  # knowledge bases' vectors and local folders; default $OUTCROP_HOME/knowledge
    # Bedrock's RDS storage type for knowledge bases: rdsConfiguration.resourceArn -> PostgreSQL URL ("*": any ARN)
    knowledge_rds_urls: dict[str, str] = field(default_factory=dict)
    # Batch jobs' files: s3://NAME/KEY is <batch_dir>/NAME/KEY when that folder exists (outcrop.objects); the only
    # local files an API caller can name. Default $OUTCROP_HOME/batch
    batch_dir: str | None = None
    # OpenAI's /v1/files (batch inputs, batches' outputs): a folder URI for outcrop.objects. Default
    # s3://outcrop-files/, which is <batch_dir>/outcrop-files (made at start): an S3 bucket's URI puts them there
    batch_files_uri: str | None = None
    max_file_mib: int = 200  # uploads to /v1/files larger than this are refused (413); OpenAI's limit for batches
    # Bedrock Agents' action groups whose actionGroupExecutor names a Lambda ARN: ARN -> the local HTTP endpoint that
    # stands for it (it is POSTed Bedrock's Lambda input event and answers its response event)
    agent_lambda_urls: dict[str, str] = field(default_factory=dict)
    models: tuple[ModelSpec, ...] = field(default=())
    quotas: tuple[QuotaRule, ...] = field(default=())
    roles: tuple[Role, ...] = field(default=())  # service roles batch jobs pass (outcrop.auth.roles)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def home() -> Path:
    return Path(os.environ.get("OUTCROP_HOME") or Path.home() / ".outcrop")


def default_config_path() -> Path:
    env = os.environ.get("OUTCROP_CONFIG")
    return Path(env) if env else home() / "config.toml"


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"{path}: not valid TOML: {exc}") from exc


def load(path: Path | None = None) -> Settings:
    path = path or default_config_path()
    raw = _read(path)
    tables = {"server", "models", "quotas", "roles"}
    stray = sorted(set(raw) - tables)
    if stray:  # a misspelt [[role]] must not leave every caller unrestricted without a word
        raise InvalidRequest(f"{path}: unknown top-level key(s) {stray}; known ones are {sorted(tables)}")
    for name in ("models", "quotas", "roles"):
        entries = raw.get(name, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidRequest(f"{path}: {name} must be [[{name}]] tables")
    server = raw.get("server", {})
    if not isinstance(server, dict):
        raise InvalidRequest(f"{path}: server must be a [server] table")
    known = {f.name for f in fields(Settings)} - {"config_path", "models", "quotas", "roles"}
    unknown = sorted(set(server) - known)
    if unknown:
        raise InvalidRequest(f"{path}: unknown [server] key(s) {unknown}; known keys are {sorted(known)}")
    models = tuple(ModelSpec.from_dict(m, f"{path}: [[models]] #{i + 1}") for i, m in enumerate(raw.get("models", [])))
    ids = [m.id for m in models] + [a for m in models for a in m.aliases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InvalidRequest(f"{path}: model id(s) declared twice: {dupes}")
    quotas = tuple(QuotaRule.from_dict(q, f"{path}: [[quotas]] #{i + 1}") for i, q in enumerate(raw.get("quotas", [])))
    roles = tuple(Role.from_dict(r, f"{path}: [[roles]] #{i + 1}") for i, r in enumerate(raw.get("roles", [])))
    arns = [r.arn for r in roles]
    if len(set(arns)) != len(arns):
        raise InvalidRequest(f"{path}: role(s) declared twice: {sorted({a for a in arns if arns.count(a) > 1})}")
    origins = server.get("allowed_origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) and "://" in o for o in origins):
        raise InvalidRequest(f'{path}: allowed_origins must be a list of origins like "https://app.example.com"')
    for key in ("max_request_mib", "max_file_mib", "max_header_kib", "max_messages", "max_tools", "max_content_blocks"):
        n = server.get(key, 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidRequest(f"{path}: {key} must be a whole number of at least 1, not {n!r}")
    for key in ("shutdown_grace_s", "header_timeout_s", "body_timeout_s", "keep_alive_s"):
        t = server.get(key, 1)
        if not isinstance(t, int | float) or isinstance(t, bool) or t <= 0:
            raise InvalidRequest(f"{path}: {key} must be a number of seconds above 0, not {t!r}")
    rds = server.get("knowledge_rds_urls", {})
    if not isinstance(rds, dict) or not all(
        isinstance(u, str) and u.startswith(("postgresql://", "postgresql+", "postgres://")) for u in rds.values()
    ):
        raise InvalidRequest(f'{path}: [server.knowledge_rds_urls] maps RDS resource ARNs (or "*") to PostgreSQL '
                             'URLs like "postgresql://user:password@host/db"')  # fmt: skip
    lambdas = server.get("agent_lambda_urls", {})
    if not isinstance(lambdas, dict) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in lambdas.values()
    ):
        raise InvalidRequest(f'{path}: [server.agent_lambda_urls] maps Lambda function ARNs to HTTP endpoints like '
                             '"http://127.0.0.1:9001/invoke"')  # fmt: skip
    server = {**server, "allowed_origins": tuple(o.rstrip("/") for o in origins)}
    return Settings(config_path=path, models=models, quotas=quotas, roles=roles, **server)


def save_models(path: Path, models: list[ModelSpec]) -> None:
    raw = _read(path)
    raw["models"] = [m.to_dict() for m in models]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(raw))


def database_url(settings: Settings) -> str:
    return os.environ.get("OUTCROP_DATABASE_URL") or settings.database or f"sqlite:///{home() / 'outcrop.db'}"


def knowledge_dir(settings: Settings) -> Path:
    return Path(settings.knowledge_dir) if settings.knowledge_dir else home() / "knowledge"


def batch_dir(settings: Settings) -> Path:
    return Path(settings.batch_dir) if settings.batch_dir else home() / "batch"


def key_file() -> Path:
    return home() / "secret.key"
