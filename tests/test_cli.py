"""The `outcrop` command: models add/list/rm, models pull against a local hub, and serve."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from outcrop.cli import main
from outcrop.config import load
from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS
from tests.conftest import client, free_port


def test_models_add_list_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(tmp_path / "config.toml")
    assert main(["--config", cfg, "models", "add", str(BUILTIN_GGUF), "--id", "anthropic.claude-3-haiku-20240307-v1:0",
                 "--alias", "meta.llama3-1-8b-instruct-v1:0"]) == 0  # fmt: skip
    [spec] = load(Path(cfg)).models
    assert spec.id == "anthropic.claude-3-haiku-20240307-v1:0" and spec.path == str(BUILTIN_GGUF)
    assert spec.aliases == ("meta.llama3-1-8b-instruct-v1:0",)

    capsys.readouterr()
    assert main(["--config", cfg, "models", "list"]) == 0
    listing = capsys.readouterr().out
    assert BUILTIN_MODEL_ID in listing and "anthropic.claude-3-haiku-20240307-v1:0" in listing

    # the same id twice is refused, with a message
    assert main(["--config", cfg, "models", "add", str(BUILTIN_GGUF), "--id", "meta.llama3-1-8b-instruct-v1:0"]) == 2
    assert "already configured" in capsys.readouterr().err

    assert main(["--config", cfg, "models", "rm", "anthropic.claude-3-haiku-20240307-v1:0"]) == 0
    assert load(Path(cfg)).models == ()
    assert main(["--config", cfg, "models", "rm", "nope"]) == 2
    assert main(["--config", cfg, "models", "add", str(tmp_path / "missing.gguf"), "--id", "x.y"]) == 2


class _FakeHub(BaseHTTPRequestHandler):
    """Enough of the Hugging Face Hub's HTTP API for huggingface_hub to list and download a file."""

    files: dict[str, bytes] = {}
    commit = "0123456789abcdef0123456789abcdef01234567"

    def log_message(self, *args: object) -> None:
        pass

    def _resolve(self, body: bool) -> None:
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
        data = self.files.get(m.group(3)) if m else None
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.commit)
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._resolve(body=False)

    def do_GET(self) -> None:
        if self.path.startswith("/api/models/"):
            tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in self.files.items()]  # fmt: skip
            payload = json.dumps(tree).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self._resolve(body=True)


@pytest.fixture
def fake_hub() -> Iterator[str]:
    _FakeHub.files = {
        "README.md": b"# tiny",
        "tiny-f16.gguf": b"GGUF-f16",
        "tiny-q4_k_m.gguf": BUILTIN_GGUF.read_bytes(),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "OUTCROP_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"), **extra}


def test_models_pull_from_a_local_hub(tmp_path: Path, fake_hub: str) -> None:
    env = _env(tmp_path, HF_ENDPOINT=fake_hub)
    # No file named: the preferred quantization (Q4_K_M) is chosen from the repository listing.
    r = subprocess.run(
        [sys.executable, "-m", "outcrop.cli", "models", "pull", "acme/tiny-GGUF", "--id", "acme.tiny-v1:0"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    path = tmp_path / "home" / "models" / "acme/tiny-GGUF" / "tiny-q4_k_m.gguf"
    assert path.read_bytes() == BUILTIN_GGUF.read_bytes()
    [spec] = load(tmp_path / "home" / "config.toml").models
    assert spec.id == "acme.tiny-v1:0" and Path(spec.path or "") == path

    r = subprocess.run(
        [sys.executable, "-m", "outcrop.cli", "models", "pull", "acme/tiny-GGUF/tiny-f16.gguf"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "home" / "models" / "acme/tiny-GGUF" / "tiny-f16.gguf").read_bytes() == b"GGUF-f16"

    r = subprocess.run(
        [sys.executable, "-m", "outcrop.cli", "models", "pull", "acme/tiny-GGUF/missing.gguf"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "could not download" in r.stderr


def test_serve_starts_with_no_configuration(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "outcrop.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(tmp_path),
    )  # fmt: skip
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Uvicorn running" in line or not line:  # (uvicorn says "startup complete" before it listens)
                break
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}" in banner and BUILTIN_MODEL_ID in banner, banner
        out = client("bedrock-runtime", f"http://127.0.0.1:{port}").converse(
            modelId=BUILTIN_MODEL_ID,
            messages=[{"role": "user", "content": [{"text": "Hello"}]}],
            inferenceConfig={"temperature": 0},
        )
        assert out["output"]["message"]["content"] == [{"text": ANSWERS["hello"]}]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_refuses_a_missing_model_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[models]]\nid = "x.y"\npath = "/nonexistent.gguf"\n')
    r = subprocess.run(
        [sys.executable, "-m", "outcrop.cli", "--config", str(cfg), "serve", "--port", str(free_port())],
        capture_output=True, text=True, env=_env(tmp_path), timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_bad_config_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[models]]\nid = "x.y"\npath = "/a.gguf"\nflavour = "mint"\n')
    assert main(["--config", str(cfg), "models", "list"]) == 2
    assert "flavour" in capsys.readouterr().err
