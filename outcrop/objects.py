"""The object-storage seam: the files of batch jobs (inputs, outputs; later uploaded files) by URI, on S3 or on disk.

    s3://NAME/KEY      <root>/NAME/KEY when the server's owner made the folder <root>/NAME (it may be a symbolic
                       link to a folder elsewhere), else object KEY of bucket NAME over the S3 API at the server's
                       `s3_endpoint_url` (None: AWS), with boto3's usual credentials (environment, profile, role)
    file:///PATH       a local file, only inside one of the roots: file://<root>/NAME/KEY is s3://NAME/KEY above

The roots are the folders the server's owner allows (`[server] batch_dir`, default $OUTCROP_HOME/batch). An API
caller can name nothing outside them: a key with an empty, `.` or `..` part is refused, and a path that resolves
outside its bucket folder (a link inside it pointing elsewhere) is refused or, when listing, skipped.

Writes are atomic: on disk, a temporary file in the same folder, flushed to disk, then renamed over the target;
on S3, one PutObject. A reader sees the old object or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from outcrop import errors

_S3 = re.compile(r"^s3://(?P<bucket>[^/]+)(?:/(?P<key>.*))?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Listed:
    """An object found by `Objects.list`: its URI (in the form it was asked for) and size in bytes."""

    uri: str
    size: int


class Backend(Protocol):
    """One bucket: a local folder or an S3 bucket. Keys are "/"-separated and already checked."""

    bucket: str

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def keys(self, prefix: str) -> Iterator[tuple[str, int]]: ...

    def delete(self, key: str) -> None: ...


def _s3_parts(uri: str, *, prefix: bool) -> tuple[str, str] | None:
    """(bucket, key) of an s3:// `uri`, None for another scheme; InvalidRequest for a bad bucket or key."""
    m = _S3.match(uri)
    if m is None:
        return None
    bucket, key = m.group("bucket"), m.group("key") or ""
    if not _BUCKET.match(bucket):
        raise errors.InvalidRequest(f"'{uri}' does not name a valid bucket.")
    if not key and not prefix:
        raise errors.InvalidRequest(f"'{uri}' names a bucket, not an object (s3://BUCKET/KEY).")
    _check_key(key, uri, prefix=prefix)
    return bucket, key


def valid_location(uri: str) -> bool:
    """Whether `uri` is an s3://BUCKET or s3://BUCKET/PREFIX/ this module would take (a valid bucket, a plain key)."""
    try:
        return _s3_parts(uri, prefix=True) is not None
    except errors.InvalidRequest:
        return False


def _check_key(key: str, where: str, *, prefix: bool = False) -> str:
    """`key` if it is a plain path (a prefix may be empty or end with "/"); InvalidRequest otherwise."""
    body = key[:-1] if prefix and key.endswith("/") else key
    if prefix and not body:
        return key
    if "\\" in key or "\0" in key or any(part in ("", ".", "..") for part in body.split("/")):
        raise errors.InvalidRequest(f"'{where}' is not a plain path: its key has an empty, '.' or '..' part.")
    return key


class FolderBackend:
    """A local folder standing for a bucket."""

    def __init__(self, root: Path, bucket: str) -> None:
        self.root = root.resolve()
        self.bucket = bucket

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*key.split("/"))
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise errors.AccessDenied(f"s3://{self.bucket}/{key} leads outside the folder that stands for the bucket.")
        return resolved

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise errors.NotFound(f"s3://{self.bucket}/{key} was not found.") from None
        except IsADirectoryError:
            raise errors.NotFound(f"s3://{self.bucket}/{key} is a folder, not a file.") from None
        except OSError as exc:
            raise errors.InvalidRequest(f"s3://{self.bucket}/{key} could not be read: {exc.strerror}.") from exc

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            _sync_dir(path.parent)
        except OSError as exc:
            raise errors.InvalidRequest(f"s3://{self.bucket}/{key} could not be written: {exc.strerror}.") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        for here, dirs, names in os.walk(start, followlinks=False):
            dirs.sort()
            for name in sorted(names):
                path = Path(here) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or (name.endswith(".part") and name.startswith(".")):
                    continue  # (a write in progress is no object yet)
                try:
                    resolved = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    continue
                if resolved.is_relative_to(self.root) and resolved.is_file():
                    yield key, resolved.stat().st_size

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


class S3Backend:
    """Bucket `bucket` over the S3 API (AWS, MinIO, moto, ...)."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self._client = client

    def _error(self, exc: Exception, key: str, doing: str) -> errors.OutcropError:
        where = f"s3://{self.bucket}/{key}"
        code = ""
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "NoSuchKey", "404", "NotFound"):
            return errors.NotFound(f"{where} was not found ({code}).")
        if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return errors.AccessDenied(f"{where} could not be {doing}: access denied ({code}).")
        return errors.InvalidRequest(f"{where} could not be {doing}: {type(exc).__name__}: {exc}")

    def read(self, key: str) -> bytes:
        try:
            return bytes(self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception as exc:
            raise self._error(exc, key, "read") from exc

    def write(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:
            raise self._error(exc, key, "written") from exc

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:
            error = self._error(exc, key, "read")
            if isinstance(error, errors.NotFound):  # (HEAD has no body: a missing bucket is a plain 404 too)
                return False
            raise error from exc

    def keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):  # (the folder markers some tools write)
                        yield obj["Key"], int(obj.get("Size", 0))
        except Exception as exc:
            raise self._error(exc, prefix, "listed") from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._error(exc, key, "deleted") from exc


class Objects:
    """Files by URI (see the module's docstring). Blocking: call from a thread."""

    def __init__(self, roots: Sequence[Path], endpoint_url: str | None = None, region: str | None = None) -> None:
        if not roots:
            raise ValueError("Objects needs at least one root folder")
        self.roots = tuple(Path(r) for r in roots)
        self.endpoint_url = endpoint_url
        self.region = region
        self._local = threading.local()  # boto3 clients are thread-safe, making one is not

    def _s3(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import boto3

            client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=self.region)
            self._local.client = client
        return client

    def locate(self, uri: str, *, prefix: bool = False) -> tuple[Backend, str]:
        """The bucket `uri` names and the key in it (a prefix of keys when `prefix`)."""
        backend, key, _ = self._locate(uri, prefix)
        return backend, key

    def canonical(self, uri: str, *, prefix: bool = False) -> str:
        """`uri` as s3://BUCKET/KEY, whichever way it was written (file://<root>/NAME/KEY is s3://NAME/KEY): what
        service roles' locations are compared with (outcrop.auth.roles)."""
        backend, key = self.locate(uri, prefix=prefix)
        return f"s3://{backend.bucket}/{key}"

    def _locate(self, uri: str, prefix: bool) -> tuple[Backend, str, str]:
        """(the bucket, the key, the URI of the bucket's root ending in "/", written as `uri` is)."""
        parts = _s3_parts(uri, prefix=prefix)
        if parts is not None:
            bucket, key = parts
            base = f"s3://{bucket}/"
            for root in self.roots:
                folder = root / bucket
                if folder.is_dir():
                    return FolderBackend(folder, bucket), key, base
            return S3Backend(bucket, self._s3()), key, base
        if uri.startswith("file://") or uri.startswith("/"):
            return self._local_path(uri, prefix)
        raise errors.InvalidRequest(f"'{uri}' is neither an S3 URI (s3://BUCKET/KEY) nor a local file:// path.")

    def _local_path(self, uri: str, prefix: bool) -> tuple[Backend, str, str]:
        scheme = "file://" if uri.startswith("file://") else ""
        if scheme and ("?" in uri or "#" in uri or urlsplit(uri).netloc not in ("", "localhost")):
            raise errors.InvalidRequest(f"'{uri}' is not a plain file:// path (no host, query or fragment).")
        text = unquote(urlsplit(uri).path) if scheme else uri
        for root in self.roots:
            base = str(root.absolute()).rstrip("/") + "/"
            if text.startswith(base):
                bucket, _, key = text[len(base) :].partition("/")
                if _BUCKET.match(bucket) and (root / bucket).is_dir():
                    _check_key(key, uri, prefix=prefix)
                    if not key and not prefix:
                        break
                    return FolderBackend(root / bucket, bucket), key, f"{scheme}{base}{bucket}/"
        allowed = ", ".join(str(r) for r in self.roots)
        raise errors.AccessDenied(
            f"'{uri}' is not inside a folder this server lets callers use: a local path must be a file in a folder "
            f"under {allowed} (batch_dir under [server] sets it)."
        )

    def read(self, uri: str) -> bytes:
        backend, key = self.locate(uri)
        return backend.read(key)

    def write(self, uri: str, data: bytes) -> None:
        backend, key = self.locate(uri)
        backend.write(key, data)

    def exists(self, uri: str) -> bool:
        backend, key = self.locate(uri)
        return backend.exists(key)

    def delete(self, uri: str) -> None:
        backend, key = self.locate(uri)
        backend.delete(key)

    def list(self, prefix_uri: str) -> list[Listed]:
        """The objects whose URI starts with `prefix_uri`, in key order."""
        backend, prefix, base = self._locate(prefix_uri, True)
        return [Listed(base + key, size) for key, size in sorted(backend.keys(prefix))]


def join(prefix_uri: str, *parts: str) -> str:
    """`prefix_uri` (a folder, with or without its "/") and `parts` below it."""
    return "/".join([prefix_uri.rstrip("/"), *parts])


def _sync_dir(folder: Path) -> None:
    """The rename itself on disk (a crash right after it keeps the new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
