"""Bedrock's model invocation logging: full request and response bodies as JSON lines.

Off until an administrator calls PutModelInvocationLoggingConfiguration with an `s3Config` (bucket and
key prefix). Records go to that bucket on an S3-compatible store when the server has one
(`s3_endpoint_url` under [server], credentials from the usual AWS environment), else to a local folder
standing in for the bucket: `$OUTCROP_HOME/invocation-logs/<bucket>/<prefix>/...`. Objects are named as
Bedrock names them (`AWSLogs/<account>/BedrockModelInvocationLogs/<region>/YYYY/MM/DD/HH/<id>.jsonl`).
Nothing that authenticates is logged: request headers are not kept, and body members whose names say
secret, password, token, api key or authorization are replaced by "***".

Like usage records, log records wait in a bounded buffer that a background task writes once a second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from outcrop import errors
from outcrop.metering.usage import Periodic
from outcrop.store.schema import invocation_logging

log = logging.getLogger("outcrop.invocation_log")

_SECRET_PARTS = ("secret", "password", "passwd", "apikey", "authorization", "credential")
ACCOUNT = "000000000000"
CONFIG_TTL_S = 2.0


def _secret_name(name: str) -> bool:
    # api_key, apiKey, aws_secret_access_key, sessionToken, Authorization... but not max_tokens or inputTokens
    flat = name.lower().replace("_", "").replace("-", "")
    return any(part in flat for part in _SECRET_PARTS) or flat.endswith("token")


def scrub(value: Any) -> Any:
    """A copy of a JSON value with every member named like a secret replaced by ***."""
    if isinstance(value, dict):
        return {k: "***" if _secret_name(k) else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def validate(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise errors.InvalidRequest("loggingConfig must be an object.")
    known = {"cloudWatchConfig", "s3Config", "textDataDeliveryEnabled", "imageDataDeliveryEnabled",
             "embeddingDataDeliveryEnabled", "videoDataDeliveryEnabled", "audioDataDeliveryEnabled"}  # fmt: skip
    unknown = sorted(set(config) - known)
    if unknown:
        raise errors.InvalidRequest(f"loggingConfig: unknown member(s) {unknown}.")
    if "cloudWatchConfig" in config:
        raise errors.InvalidRequest("CloudWatch Logs is not available here: deliver to s3Config (a bucket) instead.")
    s3 = config.get("s3Config")
    if not isinstance(s3, dict) or not isinstance(s3.get("bucketName"), str) or not s3["bucketName"]:
        raise errors.InvalidRequest("loggingConfig.s3Config.bucketName is required.")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", s3["bucketName"]):
        raise errors.InvalidRequest(f"'{s3['bucketName']}' is not a valid bucket name.")
    prefix = s3.get("keyPrefix", "")
    if not isinstance(prefix, str) or ".." in prefix.split("/"):
        raise errors.InvalidRequest("loggingConfig.s3Config.keyPrefix must be a plain key prefix.")
    return config


_IN = ("inputTokens", "prompt_tokens", "input_tokens", "inputTokenCount")
_OUT = ("outputTokens", "completion_tokens", "output_tokens", "outputTokenCount")


def _token_counts(output: Any) -> tuple[int | None, int | None]:
    """Token counts from whatever usage member the answer (or its last stream events) carries."""
    items = output if isinstance(output, list) else [output]
    for item in reversed(items):
        if not isinstance(item, dict):
            continue
        inner = next(iter(item.values()), None) if len(item) == 1 else None
        for candidate in (item, inner if isinstance(inner, dict) else {}):
            usage = candidate.get("usage") or candidate.get("amazon-bedrock-invocationMetrics")
            if isinstance(usage, dict):
                n_in = usage.get(
                    "inputTokens", usage.get("prompt_tokens", usage.get("input_tokens", usage.get("inputTokenCount")))
                )
                n_out = usage.get(
                    "outputTokens",
                    usage.get("completion_tokens", usage.get("output_tokens", usage.get("outputTokenCount"))),
                )
                return n_in, n_out
    return None, None


def decode_body(content_type: str, raw: bytes) -> Any:
    """A response body as JSON: the object itself, or the list of events of a stream."""
    if not raw:
        return None
    if "json" in content_type:
        with contextlib.suppress(ValueError):
            return json.loads(raw)
    if content_type.startswith("text/event-stream"):
        events = []
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith("data: ") and line[6:] != "[DONE]":
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line[6:]))
        return events
    if content_type.startswith("application/vnd.amazon.eventstream"):
        from botocore.eventstream import EventStreamBuffer

        buf = EventStreamBuffer()
        buf.add_data(raw)
        events = []
        for message in buf:
            payload = json.loads(message.payload or b"null")
            if isinstance(payload, dict) and "bytes" in payload:
                payload = json.loads(base64.b64decode(payload["bytes"]))
            events.append({message.headers.get(":event-type", "event"): payload})
        return events
    return base64.b64encode(raw).decode()


class InvocationLogger(Periodic):
    def __init__(self, engine: Engine, home: Path, region: str, s3_endpoint_url: str | None = None,
                 max_buffer: int = 10_000) -> None:  # fmt: skip
        self.engine = engine
        self.home = home
        self.region = region
        self.s3_endpoint_url = s3_endpoint_url
        self._buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._config: tuple[dict[str, Any] | None, float] = (None, 0.0)
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    # --- configuration (the control-plane operations) ---------------------------------------------

    def get(self) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(invocation_logging.c.config).where(invocation_logging.c.name == "default")).first()
        return json.loads(row.config) if row else None

    def put(self, config: Any, by: str) -> None:
        text = json.dumps(validate(config))
        now = datetime.now(UTC)
        with self.engine.begin() as db:
            done = db.execute(update(invocation_logging).where(invocation_logging.c.name == "default")
                              .values(config=text, updated_by=by, updated_at=now))  # fmt: skip
            if not done.rowcount:
                db.execute(
                    insert(invocation_logging).values(name="default", config=text, updated_by=by, updated_at=now)
                )
        self._config = (None, 0.0)

    def delete(self) -> None:
        with self.engine.begin() as db:
            db.execute(delete(invocation_logging).where(invocation_logging.c.name == "default"))
        self._config = (None, 0.0)

    def active(self) -> dict[str, Any] | None:
        """The configuration in force (re-read every few seconds, so other processes' changes apply)."""
        config, expires = self._config
        if expires < time.monotonic():
            config = self.get()
            self._config = (config, time.monotonic() + CONFIG_TTL_S)
        return config

    # --- records ----------------------------------------------------------------------------------

    def enabled(self) -> bool:
        config = self._config[0]
        return config is not None and config.get("textDataDeliveryEnabled") is not False

    def record(self, *, operation: str, model_id: str, principal: str, request_id: str, request_body: bytes,
               response_type: str, response_body: bytes) -> None:  # fmt: skip
        config = self._config[0]
        if config is None or config.get("textDataDeliveryEnabled") is False:
            return
        try:
            input_json = json.loads(request_body) if request_body else None
        except ValueError:
            input_json = base64.b64encode(request_body).decode()
        output_json = decode_body(response_type, response_body)
        input_tokens, output_tokens = _token_counts(output_json)
        self._buffer.append({
            "schemaType": "ModelInvocationLog",
            "schemaVersion": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "accountId": ACCOUNT,
            "identity": {"arn": f"arn:aws:iam::{ACCOUNT}:user/{principal}"},
            "region": self.region,
            "requestId": request_id,
            "operation": operation,
            "modelId": model_id,
            "input": {"inputContentType": "application/json", "inputBodyJson": scrub(input_json),
                      "inputTokenCount": input_tokens},
            "output": {"outputContentType": response_type, "outputBodyJson": scrub(output_json),
                       "outputTokenCount": output_tokens},
        })  # fmt: skip

    def _write(self, config: dict[str, Any], records: list[dict[str, Any]]) -> None:
        s3 = config["s3Config"]
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
        parts = (s3.get("keyPrefix", "").strip("/"), "AWSLogs", ACCOUNT, "BedrockModelInvocationLogs", self.region)
        key = "/".join([p for p in parts if p] + [now.strftime("%Y/%m/%d/%H"), name])
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        if self.s3_endpoint_url:
            import boto3

            boto3.client("s3", endpoint_url=self.s3_endpoint_url).put_object(
                Bucket=s3["bucketName"], Key=key, Body=data
            )
        else:
            path = self.home / "invocation-logs" / s3["bucketName"] / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    async def flush(self) -> None:
        if not self._buffer:
            return
        config = await asyncio.to_thread(self.active)
        records = [self._buffer.popleft() for _ in range(len(self._buffer))]
        if config is None:
            return  # logging was switched off meanwhile
        try:
            await asyncio.to_thread(self._write, config, records)
            self.written += len(records)
        except Exception:
            log.exception("could not write %d invocation log records", len(records))

    async def tick(self) -> None:
        await asyncio.to_thread(self.active)  # keep the cached configuration fresh
        await self.flush()
