"""Listing and reading an S3 data source's documents: a local folder standing for a bucket (keys, prefixes,
sidecars paired, fingerprints that move with a change, nothing read from outside the folder) and the bucket over
S3 on a real moto server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outcrop import errors
from outcrop.knowledge.sources import FolderSource, S3Source, bucket_of, open_source, parse_uri, scan
from tests.conftest import free_port


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)


FILES = {
    "docs/a.md": b"# A",
    "docs/a.md.metadata.json": b'{"metadataAttributes": {}}',
    "docs/sub/b.pdf": b"%PDF",
    "docs/orphan.txt.metadata.json": b"{}",
    "other/c.txt": b"c",
}


def test_folder_scan_pairs_sidecars_and_honours_prefixes(tmp_path: Path) -> None:
    _tree(tmp_path / "bucket", FILES)
    source = FolderSource("bucket", tmp_path / "bucket")
    found = scan(source, ["docs/"])
    assert [d.key for d in found.documents] == ["docs/a.md", "docs/sub/b.pdf"]
    assert found.sidecars == 2
    a, b = found.documents
    assert a.sidecar is not None and a.sidecar.key == "docs/a.md.metadata.json" and b.sidecar is None
    assert a.uri == "s3://bucket/docs/a.md"
    assert [d.key for d in scan(source, []).documents] == ["docs/a.md", "docs/sub/b.pdf", "other/c.txt"]
    assert [d.key for d in scan(source, ["docs/", "docs/sub/"]).documents] == ["docs/a.md", "docs/sub/b.pdf"]
    assert source.read("docs/sub/b.pdf") == b"%PDF"
    before = a.file.tag
    path = tmp_path / "bucket" / "docs" / "a.md"
    path.write_bytes(b"# A, longer")
    os.utime(path, ns=(1, 2))
    assert scan(source, ["docs/"]).documents[0].file.tag != before


def test_folder_never_reads_outside_itself(tmp_path: Path) -> None:
    _tree(tmp_path / "bucket", {"in.txt": b"inside"})
    (tmp_path / "secret.txt").write_bytes(b"outside")
    (tmp_path / "bucket" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "bucket" / "dir").symlink_to(tmp_path, target_is_directory=True)
    source = FolderSource("bucket", tmp_path / "bucket")
    assert [d.key for d in scan(source, []).documents] == ["in.txt"]
    for key in ("leak.txt", "../secret.txt", "dir/secret.txt", "/etc/passwd", "a//b", "./in.txt"):
        with pytest.raises(errors.OutcropError):
            source.read(key)
    with pytest.raises(errors.NotFound):
        source.read("missing.txt")


def test_a_linked_folder_is_the_owners_choice(tmp_path: Path) -> None:
    _tree(tmp_path / "elsewhere", {"x.md": b"# X"})
    (tmp_path / "knowledge" / "folders").mkdir(parents=True)
    (tmp_path / "knowledge" / "folders" / "team-docs").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    source = open_source("team-docs", tmp_path / "knowledge", None)
    assert isinstance(source, FolderSource) and source.read("x.md") == b"# X"
    assert isinstance(open_source("no-folder", tmp_path / "knowledge", "http://127.0.0.1:9"), S3Source)


def test_uris_and_bucket_arns() -> None:
    assert parse_uri("s3://b/k/e/y.txt") == ("b", "k/e/y.txt")
    assert bucket_of({"s3Configuration": {"bucketArn": "arn:aws:s3:::my-bucket"}}) == "my-bucket"
    for bad in ("s3://bucket", "http://b/k", "s3:///k"):
        with pytest.raises(errors.InvalidRequest):
            parse_uri(bad)
    with pytest.raises(errors.InvalidRequest):
        bucket_of({"s3Configuration": {"bucketArn": "arn:aws:s3:::bucket/with/key"}})


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[Any, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "t"),
            ("AWS_SECRET_ACCESS_KEY", "t"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ):
            env.setenv(name, value)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        try:
            endpoint = f"http://127.0.0.1:{port}"
            yield boto3.client("s3", endpoint_url=endpoint), endpoint
        finally:
            server.stop()


def test_s3_listing_pages_and_fingerprints(s3: tuple[Any, str]) -> None:
    client, endpoint = s3
    client.create_bucket(Bucket="many")
    for i in range(1005):  # more than one list_objects_v2 page
        client.put_object(Bucket="many", Key=f"p/{i:04d}.txt", Body=b"x")
    client.put_object(Bucket="many", Key="p/0001.txt.metadata.json", Body=b"{}")
    client.put_object(Bucket="many", Key="p/folder/", Body=b"")
    source = S3Source("many", endpoint)
    found = scan(source, ["p/"])
    assert len(found.documents) == 1005 and found.sidecars == 1
    assert found.documents[1].sidecar is not None
    tag = found.documents[0].file.tag
    client.put_object(Bucket="many", Key="p/0000.txt", Body=b"changed")
    assert scan(source, ["p/0000"]).documents[0].file.tag != tag
    assert source.read("p/0000.txt") == b"changed"
    with pytest.raises(errors.NotFound):
        source.read("p/none.txt")
    with pytest.raises(errors.NotFound):
        list(S3Source("no-such-bucket", endpoint).files([]))
