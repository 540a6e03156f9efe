"""The servers the concurrency and gateway benchmarks compare Outcrop with, started as subprocesses.

Not a benchmark itself. Nothing here is Outcrop code or ships with it:

- `llama-server`, llama.cpp's own server: built for the benchmark only, from the llama.cpp sources
  vendored in the llama-cpp-python sdist of the version Outcrop pins (so both run the same llama.cpp),
  into benchmarks/.llama-server/ (git-ignored). `ensure_llama_server()` downloads the sdist from the
  package index with pip and builds the one target with CMake (about 10 minutes on 2 cores).
- llama-cpp-python's own server (`python -m llama_cpp.server`), from this environment
  (`pip install -e '.[bench]'` adds its web dependencies).
- the LiteLLM proxy, in a virtual environment of its own (benchmarks/.venv-litellm, git-ignored, made on
  first use with `pip install 'litellm[proxy]'`), so its pins never touch the project's environment.

On CPUs with AMX, llama.cpp's weight repacking crashes on Q8_0 models (ggml-org/llama.cpp#20824), so every
llama.cpp here runs with repacking off there, as Outcrop does (`outcrop.engines.llamacpp.native`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from _common import ROOT, Server, free_port, stop, wait_http

from outcrop.engines.llamacpp.native import default_repack

LLAMA_SERVER_DIR = ROOT / "benchmarks" / ".llama-server"
LLAMA_SERVER = LLAMA_SERVER_DIR / "build" / "bin" / "llama-server"
LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
LITELLM_KEY = "sk-outcrop-bench-3f9c2a7d5e1b4c8a9d0e6f2b7a1c5d3e"  # LiteLLM refuses to start without a master key


def llama_cpp_python_version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def ensure_llama_server(path: Path | None = None) -> Path:
    """The llama-server binary: `path` if given, else the one built here, building it first if missing."""
    if path is not None:
        if not path.is_file():
            raise SystemExit(f"{path} does not exist")
        return path
    if LLAMA_SERVER.is_file():
        return LLAMA_SERVER
    version = llama_cpp_python_version()
    print(f"building llama-server from the llama.cpp vendored in llama-cpp-python {version}'s sdist "
          f"(about 10 minutes on 2 cores) into {LLAMA_SERVER_DIR}", flush=True)  # fmt: skip
    LLAMA_SERVER_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={version}", "-d", tmp], check=True)  # fmt: skip
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        source = next(Path(tmp).glob("llama_cpp_python-*")) / "vendor" / "llama.cpp"
        src = LLAMA_SERVER_DIR / "src"
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(source, src)
    build = LLAMA_SERVER_DIR / "build"
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 1)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return LLAMA_SERVER


@contextlib.contextmanager
def _process(cmd: Sequence[str], ready_path: str, env: dict[str, str] | None = None,
             timeout_s: float = 300) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="outcrop-anchor-") as tmp:
        log_path = Path(tmp) / "server.log"
        port = int(cmd[cmd.index("--port") + 1])
        with log_path.open("wb") as log:
            process = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        server = Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log_path)
        try:
            wait_http(server, ready_path, timeout_s, cmd[0])
            yield process, log_path
        finally:
            stop(process)


@contextlib.contextmanager
def llama_server(binary: Path, model: Path, *, parallel: int, n_ctx: int, threads: int,
                 n_batch: int = 2048, flash_attn: str = "off") -> Iterator[Server]:  # fmt: skip
    """llama-server with `parallel` slots of `n_ctx` tokens each (-c is the total it splits among them),
    continuous batching (its default), its prompt cache as it comes. Flash attention off by default, as
    in Outcrop: llama-server's "auto" turns it on, which decodes slower on a CPU."""
    port = free_port()
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--parallel", str(parallel), "-c", str(n_ctx * parallel), "-t", str(threads), "-tb", str(threads),
           "-b", str(n_batch), "-fa", flash_attn, "--no-webui", "--log-disable"]  # fmt: skip
    if not default_repack():
        cmd.append("--no-repack")
    with _process(cmd, "/health") as (process, log_path):
        yield Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log_path)


_LLAMA_CPP_SERVER_MAIN = """
import sys
import llama_cpp.llama_cpp as L
if sys.argv.pop(1) == "no-repack":
    _default = L.llama_model_default_params
    def _params():
        p = _default()
        p.use_extra_bufts = False
        return p
    L.llama_model_default_params = _params
from llama_cpp.server.__main__ import main
main()
"""


@contextlib.contextmanager
def llama_cpp_python_server(model: Path, *, n_ctx: int, threads: int) -> Iterator[Server]:
    """`python -m llama_cpp.server` (one request at a time, by design), with interrupt_requests off so a
    new request waits instead of cutting off the one running."""
    port = free_port()
    cmd = [sys.executable, "-c", _LLAMA_CPP_SERVER_MAIN, "repack" if default_repack() else "no-repack",
           "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads), "--n_threads_batch", str(threads), "--interrupt_requests", "False",
           "--chat_format", "chatml"]  # fmt: skip
    with _process(cmd, "/v1/models") as (process, log_path):
        yield Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log_path)


def ensure_litellm() -> Path:
    """The LiteLLM proxy's executable, in its own virtual environment (made on first use)."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.is_file():
        return exe
    print(f"installing the LiteLLM proxy into {LITELLM_VENV} (a minute or two)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True)
    return exe


@contextlib.contextmanager
def litellm_proxy(upstream: str, model: str, *, workers: int = 1) -> Iterator[Server]:
    """The LiteLLM proxy forwarding `model` to the OpenAI-compatible `upstream`, no database, no logging
    callbacks: its leanest configuration. Callers authenticate with LITELLM_KEY, its master key."""
    exe = ensure_litellm()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="outcrop-litellm-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {model}\n"
            "    litellm_params:\n"
            f"      model: openai/{model}\n"
            f"      api_base: {upstream}\n"
            "      api_key: none\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
            "  drop_params: true\n"
        )
        env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_ADMIN_UI": "True",
               "LITELLM_MASTER_KEY": LITELLM_KEY}  # fmt: skip
        cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", str(workers)]  # fmt: skip
        with _process(cmd, "/health/liveliness", env=env, timeout_s=180) as (process, log_path):
            yield Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log_path)
