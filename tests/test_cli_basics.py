"""What every command offers a new user: -h as well as --help, --version, and the LICENSE that
pyproject.toml declares."""
from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reproduce.commands.cli import main as fcn
from weight_convert.cli import main as convert_caffe
from weight_convert import provenance

ROOT = Path(__file__).resolve().parent.parent


def all_commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The argument paths of `command` and every sub-command under it."""
    found = [path]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += all_commands(sub, path + (name,))
    return found


FCN_COMMANDS = all_commands(fcn)


def test_the_walk_sees_nested_commands():
    assert ("data", "fetch") in FCN_COMMANDS and ("figure", "grid") in FCN_COMMANDS and () in FCN_COMMANDS
    assert len(FCN_COMMANDS) > 15


@pytest.mark.parametrize("path", FCN_COMMANDS, ids=lambda p: " ".join(p) or "fcn")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_fcn_command_takes_h_and_help(path, flag):
    result = CliRunner().invoke(fcn, [*path, flag], prog_name="fcn")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: fcn {' '.join(path)}".rstrip() + " ")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_convert_caffe_takes_h_and_help(flag):
    result = CliRunner().invoke(convert_caffe, [flag], prog_name="convert-caffe")
    assert result.exit_code == 0, result.output
    assert "Usage: convert-caffe" in result.output and "--version" in result.output


def expected_version_line(program: str) -> str:
    text = f"{program} {metadata.version('fcn-repro')}"
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return text
    return text + f" (commit {head[:12]}"


@pytest.mark.parametrize("command, program", [(fcn, "fcn (fcn-repro)"), (convert_caffe, "convert-caffe (fcn-repro)")])
def test_version_names_the_package_version_and_commit(command, program):
    result = CliRunner().invoke(command, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(expected_version_line(program)), result.output
    assert metadata.version("fcn-repro") == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_no_commit_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    provenance.git_state.cache_clear()
    try:
        assert provenance.git_state() == {"commit": None, "dirty": None}
        assert provenance.describe("x") == f"x {provenance.version()}"
    finally:
        provenance.git_state.cache_clear()


def test_license_is_the_declared_bsd_2_clause():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == {"text": "BSD-2-Clause"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 2-Clause License")
    assert "the fcn-repro authors" in text
    assert "1. Redistributions of source code" in text and "2. Redistributions in binary form" in text
    assert "3." not in text  # two clauses, not three
