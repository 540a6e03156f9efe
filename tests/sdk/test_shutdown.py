"""SIGTERM on `outcrop serve` (a real process, the built-in model): streams in flight finish within the grace
period, or are cut off at its end; either way the process exits cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx

from outcrop.models import BUILTIN_MODEL_ID
from tests.conftest import serve_process


def _serve(tmp: Path, grace_s: float) -> tuple[subprocess.Popen[str], str]:
    cfg = tmp / "config.toml"
    cfg.write_text(f"[server]\nbuiltin_embedding_model = false\nshutdown_grace_s = {grace_s}\n")
    return serve_process(cfg, tmp)


def _stream_after_sigterm(proc: subprocess.Popen[str], url: str, tokens: int) -> tuple[int, bool, float]:
    """Start a long stream, SIGTERM the server after its first chunk: (tokens received, finished, seconds to exit)."""
    body = {"model": BUILTIN_MODEL_ID, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": tokens,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}  # fmt: skip
    got, finished, sent = 0, False, 0.0
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    finished = chunk["usage"]["completion_tokens"] == tokens
                got += sum(1 for c in chunk.get("choices") or [] if c["delta"].get("content"))
                if got == 1 and not sent:
                    sent = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
    except httpx.HTTPError:
        pass  # cut off at the end of the grace period
    proc.wait(timeout=60)
    return got, finished, time.monotonic() - sent


def _exited_cleanly(proc: subprocess.Popen[str]) -> None:
    # uvicorn re-raises the signal once it has shut down, so the exit status says SIGTERM ended it
    assert proc.returncode in (0, -signal.SIGTERM)
    output = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in output and "Finished server process" in output, output[-2000:]


def test_sigterm_lets_a_stream_in_flight_finish(tmp_path: Path) -> None:
    proc, url = _serve(tmp_path, grace_s=60)
    got, finished, _ = _stream_after_sigterm(proc, url, 1500)
    assert finished and got > 1000
    _exited_cleanly(proc)


def test_sigterm_cuts_off_what_outlasts_the_grace_period(tmp_path: Path) -> None:
    proc, url = _serve(tmp_path, grace_s=0.5)
    _, finished, took = _stream_after_sigterm(proc, url, 4000)
    assert not finished and took < 15
    _exited_cleanly(proc)
