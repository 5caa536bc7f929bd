"""Click options shared by several commands, defined once so that they agree (name, default, help).

`--data-root`, `--device`, `--width` and `--workers` are defined here and nowhere else; every `fcn`
command and `convert-caffe` that takes one uses these (tests/test_cli_options.py walks the command
tree and checks it). Library modules never import this (they take plain values).
"""
from __future__ import annotations

from pathlib import Path

import click

# ---------------------------------------------------------------------------------------------
# --data-root

DEFAULT_DATA_ROOT = "data"
DATA_ROOT_ENV = "FCN_DATA_ROOT"
DATA_ROOT_HELP = (f"Folder holding the datasets (each in <data-root>/<name>/, as `fcn data fetch` lays them "
                  f"out) and weights/ (env {DATA_ROOT_ENV}).")


def data_root_option(*, must_exist: bool):
    """--data-root: `must_exist` for commands that read the data (train, eval); `fcn data` creates it."""
    return click.option("--data-root", type=click.Path(exists=must_exist, file_okay=False, path_type=Path),
                        default=DEFAULT_DATA_ROOT, envvar=DATA_ROOT_ENV, show_default=True, help=DATA_ROOT_HELP)


#: --data-root of the commands that read data: the folder must exist.
DATA_ROOT = data_root_option(must_exist=True)

# ---------------------------------------------------------------------------------------------
# --device

DEFAULT_DEVICE = "auto"
DEVICE_HELP = ('Where to run: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:N". '
               'Checked before anything is read or written.')


def _resolve(ctx: click.Context, param: click.Parameter, value: str):
    from reproduce.device import DeviceError, resolve_device
    try:
        return resolve_device(value)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None


#: --device for every command that runs a net: the command receives a torch.device, resolved by
#: reproduce.device.resolve_device while the options are parsed (one clean line if unusable).
DEVICE = click.option("--device", default=DEFAULT_DEVICE, show_default=True, callback=_resolve, help=DEVICE_HELP)

#: The same option, the name unresolved (`fcn check-device` reports on the name it was given).
DEVICE_NAME = click.option("--device", default=DEFAULT_DEVICE, show_default=True, help=DEVICE_HELP)

# ---------------------------------------------------------------------------------------------
# --width

WIDTH_HELP = ("Trunk channel multiplier: tests and smoke runs use < 1, not the paper's nets. Only needed for "
              "weights without an fcn-repro record (a .caffemodel, a state dict from elsewhere); one that "
              "contradicts the record is an error.  [default: the width the weights file records, else 1]")

#: --width: None means "the weights' record says, else full width (1)"; commands resolve it
#: through reproduce.training.checkpoint / nets.loading, which compare it with the record.
WIDTH = click.option("--width", type=click.FloatRange(min=0, min_open=True), default=None, help=WIDTH_HELP)

# ---------------------------------------------------------------------------------------------
# --workers

DEFAULT_WORKERS = 2
WORKERS = click.option("--workers", type=click.IntRange(min=0), default=DEFAULT_WORKERS, show_default=True,
                       help="Data-loading worker processes (0: load in the main process).")
