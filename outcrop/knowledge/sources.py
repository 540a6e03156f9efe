"""Where an S3 data source's documents come from: an S3 bucket, or a local folder named after it.

Both give the same thing: `scan()` lists the documents under the data source's inclusionPrefixes, each with the
fingerprint of the listing (S3: ETag, size and LastModified; a folder: size and modification time) and the
`<name>.metadata.json` sidecar beside it, if any; `read(key)` returns a file's bytes. A sidecar is never a
document of its own, and a key ending in "/" (the folder markers some S3 tools write) is no document.

A data source whose bucketArn is `arn:aws:s3:::NAME` reads `<knowledge_dir>/folders/NAME` when that folder exists
(resources.LOCAL_FOLDERS; the folder itself may be a symbolic link the server's owner made), else the bucket NAME
through boto3 at the server's `s3_endpoint_url` (None: AWS), with boto3's usual credentials. bucketOwnerAccountId
is not checked. Inside a folder nothing resolves outside it: a link in it that points elsewhere is skipped, and a
key naming `..` is refused, so an API caller who names a key can only read what the owner put there.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from outcrop import errors
from outcrop.knowledge.metadata import is_sidecar, sidecar_name
from outcrop.knowledge.resources import LOCAL_FOLDERS

_BUCKET_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])$")
_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")


@dataclass(frozen=True)
class Listed:
    """One file of the listing: its key in the bucket and its fingerprint."""

    key: str
    tag: str
    size: int


@dataclass(frozen=True)
class SourceDocument:
    """A document of the data source and its sidecar (None when it has none)."""

    bucket: str
    file: Listed
    sidecar: Listed | None

    @property
    def key(self) -> str:
        return self.file.key

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.file.key)


@dataclass(frozen=True)
class Scan:
    documents: tuple[SourceDocument, ...]
    sidecars: int  # metadata files found (paired with a document or not)


class Source(Protocol):
    bucket: str

    def files(self, prefixes: Sequence[str]) -> Iterator[Listed]:
        """Every file whose key starts with one of `prefixes` (all files when there are none), each once."""

    def read(self, key: str) -> bytes:
        """The file's bytes; NotFound when it is not there (any more)."""


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI; InvalidRequest when it is not one naming an object."""
    m = _S3_URI.match(uri)
    if m is None:
        raise errors.InvalidRequest(f"'{uri}' is not an S3 URI naming an object (s3://BUCKET/KEY).")
    return m.group("bucket"), m.group("key")


def bucket_of(configuration: dict[str, Any]) -> str:
    """The bucket an S3 dataSourceConfiguration names."""
    arn = str(configuration.get("s3Configuration", {}).get("bucketArn", ""))
    m = _BUCKET_ARN.match(arn)
    if m is None:
        raise errors.InvalidRequest(f"bucketArn '{arn}' does not name an S3 bucket (arn:aws:s3:::NAME).")
    return m.group("bucket")


def scan(source: Source, prefixes: Sequence[str]) -> Scan:
    """The documents under `prefixes`, each paired with its sidecar."""
    documents: dict[str, Listed] = {}
    sidecars: dict[str, Listed] = {}
    for listed in source.files(prefixes):
        if listed.key.endswith("/"):
            continue
        (sidecars if is_sidecar(listed.key) else documents)[listed.key] = listed
    paired = tuple(
        SourceDocument(source.bucket, listed, sidecars.get(sidecar_name(key)))
        for key, listed in sorted(documents.items())
    )
    return Scan(paired, len(sidecars))


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return not prefixes or any(key.startswith(p) for p in prefixes)


class FolderSource:
    """A local folder standing for bucket `bucket`: keys are paths relative to it, with "/" between parts."""

    def __init__(self, bucket: str, root: Path) -> None:
        self.bucket = bucket
        self.root = root.resolve()

    def files(self, prefixes: Sequence[str]) -> Iterator[Listed]:
        for folder, dirs, names in os.walk(self.root, followlinks=False):
            dirs.sort()
            for name in sorted(names):
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if not _under(key, prefixes):
                    continue
                inside = self._inside(path)
                if inside is None or not inside.is_file():
                    continue
                stat = inside.stat()
                yield Listed(key, f"{stat.st_size}:{stat.st_mtime_ns}", stat.st_size)

    def _inside(self, path: Path) -> Path | None:
        """`path` resolved, if that stays inside the folder."""
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return resolved if resolved.is_relative_to(self.root) else None

    def read(self, key: str) -> bytes:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\\" in key or "\0" in key:
            raise errors.InvalidRequest(f"The key '{key}' is not a plain path inside bucket '{self.bucket}'.")
        path = self._inside(self.root.joinpath(*parts))
        if path is None or not path.is_file():
            raise errors.NotFound(f"{s3_uri(self.bucket, key)} was not found.")
        return path.read_bytes()


class S3Source:
    """Bucket `bucket` over the S3 API (AWS, MinIO, moto...) at `endpoint_url`."""

    def __init__(self, bucket: str, endpoint_url: str | None, region: str | None = None) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self._local = threading.local()  # boto3 clients are thread-safe, but making one is not

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import boto3

            client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=self.region)
            self._local.client = client
        return client

    def files(self, prefixes: Sequence[str]) -> Iterator[Listed]:
        seen: set[str] = set()
        pages = self._client().get_paginator("list_objects_v2")
        for prefix in prefixes or [""]:
            try:
                for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                    for obj in page.get("Contents", []):
                        key = obj["Key"]
                        if key in seen:  # two prefixes that overlap
                            continue
                        seen.add(key)
                        modified = obj.get("LastModified")
                        stamp = modified.isoformat() if modified is not None else ""
                        tag = f"{obj.get('ETag', '').strip(chr(34))}:{obj.get('Size', 0)}:{stamp}"
                        yield Listed(key, tag, int(obj.get("Size", 0)))
            except Exception as exc:
                raise _s3_error(exc, f"s3://{self.bucket}/{prefix}") from exc

    def read(self, key: str) -> bytes:
        try:
            response = self._client().get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read())
        except Exception as exc:
            raise _s3_error(exc, s3_uri(self.bucket, key)) from exc


def _s3_error(exc: Exception, where: str) -> errors.OutcropError:
    """What went wrong reading S3, as this server's error: a missing bucket or key is NotFound, refused access
    AccessDenied, the rest (no endpoint, no credentials) InvalidRequest naming the cause."""
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    if code in ("NoSuchBucket", "NoSuchKey", "404", "NotFound"):
        return errors.NotFound(f"{where} was not found ({code}).")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return errors.AccessDenied(f"{where} could not be read: access denied ({code}).")
    return errors.InvalidRequest(f"{where} could not be read: {type(exc).__name__}: {exc}")


def open_source(bucket: str, knowledge_dir: Path, endpoint_url: str | None, region: str | None = None) -> Source:
    """The local folder standing for `bucket` when the server's owner made one, else the bucket over S3."""
    folder = knowledge_dir / LOCAL_FOLDERS / bucket
    if folder.is_dir():
        return FolderSource(bucket, folder)
    return S3Source(bucket, endpoint_url, region)
