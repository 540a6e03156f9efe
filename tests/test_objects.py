"""outcrop.objects: one seam over local folders standing for buckets and S3 (a real moto server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outcrop import errors
from outcrop.objects import Listed, Objects, join
from tests.conftest import free_port


@pytest.fixture
def local(tmp_path: Path) -> Objects:
    (tmp_path / "root" / "jobs").mkdir(parents=True)
    return Objects([tmp_path / "root"])


def test_a_folder_under_the_root_stands_for_its_bucket(local: Objects, tmp_path: Path) -> None:
    local.write("s3://jobs/in/a.jsonl", b"one\n")
    local.write("s3://jobs/in/deeper/b.jsonl", b"two\n")
    assert (tmp_path / "root" / "jobs" / "in" / "a.jsonl").read_bytes() == b"one\n"
    assert local.read("s3://jobs/in/a.jsonl") == b"one\n"
    assert local.exists("s3://jobs/in/a.jsonl") and not local.exists("s3://jobs/in/zzz")
    assert local.list("s3://jobs/in/") == [Listed("s3://jobs/in/a.jsonl", 4), Listed("s3://jobs/in/deeper/b.jsonl", 4)]
    assert [o.uri for o in local.list("s3://jobs/in/de")] == ["s3://jobs/in/deeper/b.jsonl"]
    assert [o.uri for o in local.list("s3://jobs")] == ["s3://jobs/in/a.jsonl", "s3://jobs/in/deeper/b.jsonl"]
    local.write("s3://jobs/in/a.jsonl", b"replaced\n")  # atomically: no temporary file is left behind
    assert local.read("s3://jobs/in/a.jsonl") == b"replaced\n"
    assert sorted(p.name for p in (tmp_path / "root" / "jobs" / "in").iterdir()) == ["a.jsonl", "deeper"]
    local.delete("s3://jobs/in/a.jsonl")
    local.delete("s3://jobs/in/a.jsonl")  # (gone already: nothing to do)
    with pytest.raises(errors.NotFound):
        local.read("s3://jobs/in/a.jsonl")


def test_file_uris_and_paths_inside_the_root_are_the_same_files(local: Objects, tmp_path: Path) -> None:
    local.write("s3://jobs/x.jsonl", b"x")
    root = tmp_path / "root"
    assert local.read(f"file://{root}/jobs/x.jsonl") == b"x"
    assert local.read(f"{root}/jobs/x.jsonl") == b"x"
    assert [o.uri for o in local.list(f"file://{root}/jobs/")] == [f"file://{root}/jobs/x.jsonl"]
    local.write(join(f"file://{root}/jobs", "out", "y.out"), b"y")
    assert local.read("s3://jobs/out/y.out") == b"y"
    assert local.canonical(f"file://{root}/jobs/x.jsonl") == local.canonical("s3://jobs/x.jsonl") == "s3://jobs/x.jsonl"
    assert local.canonical(f"{root}/jobs/", prefix=True) == "s3://jobs/"
    # a query or fragment would be dropped by URL parsing, so the file meant and the file read could differ
    for odd in (f"file://{root}/jobs?", f"file://{root}/jobs/x.jsonl#y", f"file://elsewhere{root}/jobs/x.jsonl"):
        with pytest.raises(errors.InvalidRequest, match="not a plain file:// path"):
            local.list(odd)


@pytest.mark.parametrize(
    "uri",
    ["s3://jobs/../secret", "s3://jobs/a/./b", "s3://jobs/a//b", "s3://jobs/a\\b", "s3://Bad_Bucket/k", "s3://jobs",
     "http://example.com/x", "relative/path"],
)  # fmt: skip
def test_keys_that_are_not_plain_paths_are_refused(local: Objects, uri: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        local.read(uri)


def test_nothing_outside_the_roots_can_be_named(local: Objects, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (tmp_path / "root" / "jobs" / "link").symlink_to(secret)
    (tmp_path / "root" / "jobs" / "dir").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(errors.AccessDenied):
        local.read("s3://jobs/link")
    with pytest.raises(errors.AccessDenied):
        local.write("s3://jobs/dir/planted.txt", b"x")
    assert not (tmp_path / "planted.txt").exists()
    assert local.list("s3://jobs/") == []  # the link leading out is skipped
    for uri in (f"file://{secret}", str(secret), f"file://{tmp_path}/root/../secret.txt", "file:///etc/passwd"):
        with pytest.raises((errors.AccessDenied, errors.InvalidRequest)):
            local.read(uri)


def test_the_bucket_folder_itself_may_be_a_link_the_owner_made(tmp_path: Path) -> None:
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    (elsewhere / "in.jsonl").write_text("hi")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "shared").symlink_to(elsewhere, target_is_directory=True)
    assert Objects([tmp_path / "root"]).read("s3://shared/in.jsonl") == b"hi"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
            mp.setenv(name, value)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


def test_an_s3_bucket_when_no_folder_stands_for_it(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="remote")
    objects = Objects([tmp_path], s3_endpoint, "us-east-1")
    objects.write("s3://remote/in/a.jsonl", b"a")
    objects.write("s3://remote/in/b.jsonl", b"bb")
    assert objects.read("s3://remote/in/b.jsonl") == b"bb"
    assert objects.exists("s3://remote/in/a.jsonl") and not objects.exists("s3://remote/in/c.jsonl")
    assert objects.list("s3://remote/in/") == [Listed("s3://remote/in/a.jsonl", 1), Listed("s3://remote/in/b.jsonl", 2)]
    objects.delete("s3://remote/in/a.jsonl")
    with pytest.raises(errors.NotFound):
        objects.read("s3://remote/in/a.jsonl")
    with pytest.raises(errors.NotFound):
        objects.read("s3://no-such-bucket/x")
    assert not objects.exists("s3://no-such-bucket/x")
