"""Docs are tested: every CLI command and option and every config key appears in the README."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from outcrop.cli import parser
from outcrop.config import ModelSpec, Settings
from outcrop.metering.quotas import QuotaRule

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(p: argparse.ArgumentParser, prefix: str) -> list[tuple[str, list[str]]]:
    out = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(
                    (f"{prefix} {name}", [o for a in sub._actions for o in a.option_strings if o.startswith("--")])
                )
                out += _commands(sub, f"{prefix} {name}")
    return out


def test_every_cli_command_and_option_is_documented() -> None:
    for command, options in _commands(parser(), "outcrop"):
        assert command in README, command
        for option in options:
            if option != "--help":
                assert option in README, f"{command} {option}"


def test_every_config_key_is_documented() -> None:
    for f in fields(ModelSpec):
        assert f"{f.name} =" in README, f.name
    for f in fields(Settings):
        if f.name not in ("config_path", "models", "quotas"):
            assert f"{f.name} =" in README, f.name
    assert "[[quotas]]" in README
    for f in fields(QuotaRule):
        assert f"{f.name} =" in README, f.name


def test_readme_starts_with_install_and_test_commands() -> None:
    head = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "outcrop serve" in head and "pytest" in head
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "pytest" in ci
