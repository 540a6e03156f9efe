"""Shared pieces of the benchmark scripts: an `outcrop serve` subprocess, HTTP clients for it,
statistics and tables.

Not a benchmark itself; the scripts beside it import it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} as TOML")


def config_toml(models: Sequence[dict[str, Any]], server: dict[str, Any] | None = None, extra: str = "") -> str:
    """A config file serving exactly `models` (each a [[models]] table), without the built-in model;
    `server` adds [server] keys, `extra` is appended as it is (e.g. [[quotas]] tables)."""
    lines = ["[server]", "builtin_model = false", "builtin_embedding_model = false"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in (server or {}).items()]
    lines.append("")
    for model in models:
        lines.append("[[models]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in model.items()]
        lines.append("")
    return "\n".join(lines) + extra


@dataclass
class Server:
    url: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


@contextlib.contextmanager
def outcrop_server(
    models: Sequence[dict[str, Any]],
    *,
    startup_timeout_s: float = 180.0,
    server: dict[str, Any] | None = None,
    extra: str = "",
    prepare: Callable[[Path], None] | None = None,
) -> Iterator[Server]:
    """`python -m outcrop.cli --config TMP serve --port N` in a subprocess, until the block exits.

    The config and OUTCROP_HOME are a temporary directory, removed afterwards. The server is ready
    once GET /healthz answers (`outcrop serve` loads its first model before it listens; the
    benchmarks' warm-up requests load any other).
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="outcrop-bench-") as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text(config_toml(models, server, extra))
        if prepare is not None:
            prepare(Path(tmp))  # e.g. create keys in the store under OUTCROP_HOME before the server starts
        log_path = Path(tmp) / "server.log"
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        # OUTCROP_HOME too, so that nothing the server keeps (a key store, ...) lands in the user's home.
        env = {**os.environ, "PYTHONPATH": pythonpath, "OUTCROP_HOME": tmp}
        cmd = [
            sys.executable,
            "-m",
            "outcrop.cli",
            "--config",
            str(cfg),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        running = Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log_path)
        try:
            _wait_ready(running, startup_timeout_s)
            yield running
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server, timeout_s: float) -> None:
    wait_http(server, "/healthz", timeout_s, "outcrop serve")


def wait_http(server: Server, path: str, timeout_s: float, what: str) -> None:
    """Until GET `path` answers 200; RuntimeError with the end of the server's log if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {server.process.returncode}:\n{server_log_tail(server, 40)}")
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout_s:.0f}s:\n{server_log_tail(server, 40)}")
        time.sleep(0.1)


@contextlib.contextmanager
def pinned_in_memory(path: Path) -> Iterator[bool]:
    """Keep `path`'s pages in the page cache (mmap + mlock) until the block exits; yields whether it could.

    llama.cpp mmaps GGUF files, so an idle model's weights are ordinary page cache: a machine under
    memory pressure, or one that reclaims cold pages proactively (DAMON `pageout`, as on some VMs),
    drops them while the other path runs, and the next run then reads its weights back from disk,
    token after token. Both processes map the same file, so pinning its pages here keeps them
    resident for the direct path and the server alike, without changing how either loads the model.
    """
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        yield False
        return
    locked = libc.mlock(addr, size) == 0
    try:
        yield locked
    finally:
        if locked:
            libc.munlock(addr, size)
        libc.munmap(addr, size)


class CpuWatch:
    """How much CPU other processes used while a benchmark ran (Linux; None elsewhere).

    Busy time of the whole machine (/proc/stat) minus that of this process and the given ones
    (/proc/PID/stat). Two cores shared with anything else (a test run, another benchmark) make
    llama.cpp's threads wait on each other at every step, so a run with much foreign CPU use
    measures the neighbour, not Outcrop.
    """

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start = self._sample()

    def _sample(self) -> tuple[int, int] | None:
        try:
            cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            busy = sum(int(x) for x in cpu[:8]) - int(cpu[3]) - int(cpu[4])  # all but idle and iowait
            ours = 0
            for pid in (os.getpid(), *self.pids):
                # /proc/PID/stat after the ")": state is field 0, utime 11, stime 12 (clock ticks)
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
                ours += int(fields[11]) + int(fields[12])
            return busy, ours
        except (OSError, ValueError, IndexError):
            return None

    def foreign_cores(self, wall_s: float) -> float | None:
        """Average number of cores other processes kept busy since the watch started."""
        end = self._sample()
        if self.start is None or end is None or wall_s <= 0:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        foreign = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return max(0.0, foreign / ticks / wall_s)


def foreign_cpu_note(cores: float | None) -> str:
    if cores is None:
        return "other processes' CPU use: unknown"
    note = f"other processes' CPU use during the run: {cores:.2f} cores on average"
    if cores > 0.1:
        note += " -- WARNING: the machine was not quiet; figures include that contention"
    return note


def server_log_tail(server: Server, lines: int = 20) -> str:
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


# --- HTTP clients --------------------------------------------------------------------------------


class JsonHttp:
    """POSTs JSON over one keep-alive http.client connection, reconnecting when the server closed an
    idle one (uvicorn's keep-alive timeout is 5 s)."""

    def __init__(self, host: str, port: int, timeout_s: float = 300) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout_s)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode()
        try:
            response = self._post(path, data)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.conn.close()
            response = self._post(path, data)
        raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path} answered {response.status}: {raw[:500]!r}")
        return json.loads(raw)

    def _post(self, path: str, data: bytes) -> http.client.HTTPResponse:
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        return self.conn.getresponse()

    def close(self) -> None:
        self.conn.close()


@dataclass
class StreamRead:
    """One ConverseStream answer as it arrived: perf_counter() times of the request (t0), the first and
    last text delta and the end of the stream; the usage, stop reason and text it carried."""

    t0: float
    first: float
    last: float
    end: float
    deltas: int
    output_tokens: int
    input_tokens: int
    stop: str
    text: str


def converse_stream(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> StreamRead:
    """POST a ConverseStream body on a fresh connection and read the event stream as it arrives, split
    into messages by botocore's EventStreamBuffer. A fresh connection per run, because runs on a slow
    model outlast uvicorn's keep-alive timeout (5 s); connecting on loopback takes well under a millisecond."""
    from botocore.eventstream import EventStreamBuffer

    data = json.dumps(body).encode()
    conn.close()
    t0 = time.perf_counter()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"ConverseStream answered {response.status}: {response.read()[:500]!r}")
    buffer = EventStreamBuffer()
    read = StreamRead(t0, 0.0, 0.0, 0.0, 0, -1, -1, "?", "")
    text: list[str] = []
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        now = time.perf_counter()
        buffer.add_data(chunk)
        for message in buffer:
            headers = message.headers
            if headers.get(":message-type") != "event":
                raise RuntimeError(f"ConverseStream sent {headers}: {message.payload[:500]!r}")
            kind = headers.get(":event-type")
            if kind == "contentBlockDelta":
                read.deltas += 1
                read.last = now
                if read.deltas == 1:
                    read.first = now
                text.append(json.loads(message.payload)["delta"].get("text", ""))
            elif kind == "messageStop":
                read.stop = json.loads(message.payload)["stopReason"]
            elif kind == "metadata":
                usage = json.loads(message.payload)["usage"]
                read.output_tokens = int(usage["outputTokens"])
                read.input_tokens = int(usage["inputTokens"])
    read.end = time.perf_counter()
    read.text = "".join(text)
    return read


# --- statistics and tables -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A plain-text table; `align` has one `<` or `>` per column (default: first left, rest right)."""
    align = align or "<" + ">" * (len(headers) - 1)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c!s:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def machine_summary() -> str:
    import llama_cpp

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"llama-cpp-python {llama_cpp.__version__}"
    )
