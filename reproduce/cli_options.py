"""Click options shared by several `fcn` commands, defined once so that they agree (name, default, help)."""
from __future__ import annotations

import click

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
DEVICE = click.option("--device", default="auto", show_default=True, callback=_resolve, help=DEVICE_HELP)
