"""The config file: read, validated with messages that name the problem, and written back."""

from __future__ import annotations

from pathlib import Path

import pytest

from outcrop import config, errors
from outcrop.config import ModelSpec


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = config.load(tmp_path / "none.toml")
    assert (s.host, s.port, s.region, s.builtin_model, s.models) == ("127.0.0.1", 8300, "us-east-1", True, ())


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 9000\n")
    spec = ModelSpec(id="meta.llama3-1-8b-instruct-v1:0", path="/m.gguf", aliases=("a.b",), n_ctx=2048, n_threads=2)
    config.save_models(path, [spec])
    loaded = config.load(path)
    assert loaded.port == 9000 and loaded.models == (spec,)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[server]\nprot = 1\n", "prot"),
        ('[[models]]\npath = "/m.gguf"\n', "id"),
        ('[[models]]\nid = "a"\n', "path"),
        ('[[models]]\nid = "a"\nengine = "tgi"\npath = "/m"\n', "engine"),
        ('[[models]]\nid = "a"\npath = "/m"\n[[models]]\nid = "b"\npath = "/m"\naliases = ["a"]\n', "twice"),
        ("not = [toml", "TOML"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(errors.InvalidRequest) as err:
        config.load(path)
    assert needle in err.value.message


def test_env_locates_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCROP_HOME", str(tmp_path))
    monkeypatch.delenv("OUTCROP_CONFIG", raising=False)
    assert config.default_config_path() == tmp_path / "config.toml"
    monkeypatch.setenv("OUTCROP_CONFIG", str(tmp_path / "x.toml"))
    assert config.default_config_path() == tmp_path / "x.toml"
