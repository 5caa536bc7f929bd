"""`fcn check-device`: is the device fit for a full-size run? The first step of every `make reproduce-*`.

A reproduction trains for days on a GPU; on the CPU the same run takes weeks. The check stops it
before gigabytes are fetched, unless the CPU was asked for by name (DEVICE=cpu / --device cpu).
"""
from __future__ import annotations

import click

from reproduce import device as devices
from reproduce.commands.cli_options import DEVICE_NAME
from reproduce.device import DeviceError, describe, resolve_device


def check_message(name: str, *, target: str | None = None, cpu_time: str = "weeks") -> tuple[bool, str]:
    """(ok, line) for a full-size run on device `name` ("auto", "cpu", "cuda", "cuda:N").

    Not ok: the name is unusable, or it resolves to the CPU without naming it ("auto" on a machine
    without CUDA). `target` (e.g. "reproduce-voc") makes the line speak of `make TARGET DEVICE=...`;
    `cpu_time` is how long the run would take on the CPU ("weeks").
    """
    run = f"make {target}" if target else "this run"
    force = f"make {target} DEVICE=cpu" if target else "--device cpu"
    variable = f"DEVICE={name}" if target else f"--device {name}"
    try:
        device = resolve_device(name)
    except DeviceError as exc:
        reason = devices.cuda_unavailable_reason()
        if not str(name).strip().lower().startswith("cuda") or reason is None:
            return False, f"{run}: {exc}"
        return False, _cpu_refusal(run, variable, force, f"CUDA is not available on this machine ({reason})", cpu_time)
    if device.type == "cpu" and str(name).strip().lower() != "cpu":
        return False, _cpu_refusal(run, variable, force, f"it resolves to the CPU ({devices.cuda_unavailable_reason()})", cpu_time)
    if device.type == "cpu":
        return True, f"{run} runs on the CPU ({variable}), as asked: expect it to take {cpu_time}"
    return True, f"{run} runs on {describe(device)}"


def _cpu_refusal(run: str, variable: str, force: str, why: str, cpu_time: str) -> str:
    return (f"{run} asks for {variable}, but {why}. On the CPU it would take {cpu_time}: "
            f"`{force}` forces it; `make reproduce-smoke` tries the whole pipeline on the CPU in minutes.")


@click.command("check-device")
@DEVICE_NAME
@click.option("--target", default=None, help="The make target being checked (names it in the message).")
@click.option("--cpu-time", default="weeks", show_default=True, help="How long the run takes on the CPU (message).")
def check_device_command(device: str, target: str | None, cpu_time: str) -> None:
    """Exit 1 with one line saying why, before a long run starts, when DEVICE is unusable or is
    the CPU without being asked for by name; else print the device it will use."""
    ok, line = check_message(device, target=target, cpu_time=cpu_time)
    if not ok:
        raise click.ClickException(line)
    click.echo(line, err=True)
