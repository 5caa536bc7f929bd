"""reproduce.device (one device-resolving function), the shared --device option, `fcn check-device`
and the Makefile's reproduce-* targets checking the device before they fetch anything."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from reproduce import device as device_mod
from reproduce.commands.cli import main as fcn
from reproduce.device import DeviceError, resolve_device
from reproduce.commands.device_cli import check_message

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "torch X is built without CUDA"


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, whatever it has."""
    monkeypatch.setattr(device_mod, "cuda_unavailable_reason", lambda: NO_CUDA)


@pytest.fixture
def two_gpus(monkeypatch):
    """This machine as one with two CUDA devices (only resolved, never used)."""
    monkeypatch.setattr(device_mod, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_names_resolve_without_cuda(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(DeviceError, match=rf"device '{name}': CUDA is not available on this machine "
                                              rf"\({NO_CUDA}\); --device cpu"):
            resolve_device(name)


def test_names_resolve_with_two_gpus(two_gpus):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")  # un-indexed: torchrun picks LOCAL_RANK
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"'cuda:2': this machine has 2 CUDA devices \(cuda:0\.\.cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x", "cuda:-1", "", "cuda:0:1"])
def test_other_names_are_refused_naming_the_choices(name):
    with pytest.raises(DeviceError, match=r"expected one of auto, cpu, cuda, cuda:N"):
        resolve_device(name)


def _commands_with_device(group: click.Group, prefix: str = "fcn") -> dict[str, click.Command]:
    found = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(_commands_with_device(command, f"{prefix} {name}"))
        elif name != "check-device" and any(p.name == "device" for p in command.params):
            found[f"{prefix} {name}"] = command
    return found


def test_every_command_takes_the_one_shared_device_option():
    commands = _commands_with_device(fcn)
    assert {"fcn train", "fcn eval", "fcn infer", "fcn figure grid"} <= set(commands)
    options = [next(p for p in c.params if p.name == "device") for c in commands.values()]
    assert {o.default for o in options} == {"auto"}
    assert len({o.callback for o in options}) == 1 and options[0].callback is not None


def test_fcn_train_on_missing_cuda_says_so_in_one_line_and_creates_nothing(tmp_path, no_cuda):
    out = tmp_path / "runs" / "voc-fcn32s"
    result = CliRunner().invoke(fcn, ["train", "voc-fcn32s", "--device", "cuda", "--data-root", str(tmp_path),
                                      "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: device 'cuda': CUDA is not available on this machine ({NO_CUDA}); --device cpu runs on the CPU"]
    assert not (tmp_path / "runs").exists()
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("args", [
    ["eval", "voc-fcn32s", "--weights", "{w}", "--device", "cuda:1"],
    ["infer", "voc-fcn32s", "--weights", "{w}", "{w}", "--device", "cuda:1", "--out", "{tmp}/pred"],
    ["figure", "grid", "{w}", "--column", "A=voc-fcn32s:{w}", "--device", "cuda:1", "--out", "{tmp}/f.png"],
])
def test_the_other_commands_refuse_missing_cuda_the_same_way(tmp_path, no_cuda, args):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not read")
    args = [a.format(w=weights, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(fcn, args)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: device 'cuda:1': CUDA is not available on this machine ({NO_CUDA}); --device cpu runs on the CPU"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_check_device_refuses_cuda_and_auto_without_cuda_naming_the_ways_out(no_cuda):
    for name in ("cuda", "auto"):
        ok, line = check_message(name, target="reproduce-voc")
        assert not ok
        assert f"make reproduce-voc asks for DEVICE={name}" in line
        assert "would take weeks" in line
        assert "`make reproduce-voc DEVICE=cpu` forces it" in line and "`make reproduce-smoke`" in line
    ok, line = check_message("cpu", target="reproduce-voc", cpu_time="days")
    assert ok and "DEVICE=cpu" in line and "days" in line
    ok, line = check_message("gpu")
    assert not ok and "expected one of" in line


def test_check_device_passes_a_gpu(two_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"Test GPU {index}")
    assert check_message("cuda:1", target="reproduce-voc") == (True, "make reproduce-voc runs on cuda:1 (Test GPU 1)")
    ok, line = check_message("cuda:5")
    assert not ok and "this machine has 2 CUDA devices" in line


def test_fcn_check_device_exit_status(no_cuda):
    refused = CliRunner().invoke(fcn, ["check-device", "--device", "cuda", "--target", "reproduce-nyud"])
    assert refused.exit_code == 1 and refused.output.startswith("Error: make reproduce-nyud asks for DEVICE=cuda")
    assert CliRunner().invoke(fcn, ["check-device", "--device", "cpu"]).exit_code == 0


# ---------------------------------------------------------------------------------------------
# the Makefile

REPRODUCE_TARGETS = ["reproduce-voc", "reproduce-voc-released", "reproduce-nyud", "reproduce-siftflow",
                     "reproduce-context", "reproduce-alexnet", "reproduce-googlenet"]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def _make(*args: str, tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parent.parent
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # no GPU, whatever the machine has
    env.pop("MAKEFLAGS", None)
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}", "STAMP=",
                           f"DATA={tmp / 'data'}", f"RUNS={tmp / 'runs'}", f"RESULTS={tmp / 'results'}", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


@needs_make
@pytest.mark.parametrize("target", REPRODUCE_TARGETS)
def test_every_reproduce_target_checks_the_device_before_anything_else(tmp_path, target):
    plan = _make("-n", target, tmp=tmp_path)
    assert plan.returncode == 0, plan.stderr
    lines = [line for line in plan.stdout.splitlines() if line.strip()]
    assert re.search(rf"fcn check-device --device cuda --target {target}\b", lines[0]), lines[:3]
    assert any("fcn data fetch" in line for line in lines[1:])  # and the fetches come after it


@needs_make
def test_make_reproduce_voc_without_cuda_stops_before_fetching(tmp_path):
    result = _make("reproduce-voc", tmp=tmp_path)
    assert result.returncode != 0
    assert "make reproduce-voc asks for DEVICE=cuda, but CUDA is not available on this machine" in result.stderr
    assert "On the CPU it would take weeks: `make reproduce-voc DEVICE=cpu` forces it; " \
           "`make reproduce-smoke` tries the whole pipeline" in result.stderr
    assert "data fetch" not in result.stdout + result.stderr
    assert not any(tmp_path.iterdir())


@needs_make
def test_make_reproduce_voc_with_device_cpu_goes_on_to_fetch(tmp_path):
    result = _make("reproduce-voc", "DEVICE=cpu", "FETCH_FLAGS=--mirror http://127.0.0.1:9 --retries 0 --timeout 5",
                   tmp=tmp_path)
    assert result.returncode != 0  # nothing listens on the mirror's port
    assert "make reproduce-voc runs on the CPU (DEVICE=cpu), as asked" in result.stderr
    assert "fcn data fetch" in result.stdout
