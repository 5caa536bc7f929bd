"""The `fcn` command: one click group. Each sub-command lives in a CLI module (`*_cli.py`, `datasets/cli.py`)
that parses options and calls the library module doing the work; only CLI modules import click
(tests/test_layering.py)."""
import click

from reproduce.datasets.cli import data_group
from reproduce.datasets.hha_cli import hha_command
from reproduce.commands.device_cli import check_device_command
from reproduce.commands.eval_cli import eval_command, figure_command, infer_command
from reproduce.commands.export_cli import export_group
from reproduce.commands.plan_cli import plan_command
from reproduce.commands.smoke_cli import smoke_group
from reproduce.commands.tables_cli import tables_command
from reproduce.commands.train_cli import train_command
from reproduce.commands.upper_bound_cli import upper_bound_command
from weight_convert.cli import CONTEXT_SETTINGS, version_option


@click.group(context_settings=CONTEXT_SETTINGS)
@version_option("fcn (fcn-repro)")
def main() -> None:
    """fcn-repro: reproduce the FCN paper's tables, Caffe-faithfully."""
    from reproduce.progress import interval_seconds
    try:  # read by every command's progress lines: a bad value is one line here, not a traceback later
        interval_seconds()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


main.add_command(tables_command, "tables")
main.add_command(upper_bound_command, "upper-bound")

data_group.add_command(hha_command, "hha")
main.add_command(data_group, "data")
main.add_command(train_command, "train")
main.add_command(eval_command, "eval")
main.add_command(infer_command, "infer")
main.add_command(figure_command, "figure")
main.add_command(smoke_group, "smoke")
main.add_command(export_group, "export")
main.add_command(check_device_command, "check-device")
main.add_command(plan_command, "plan")


def _help_everywhere(command: click.Command) -> None:
    # -h on every command even when it is invoked on its own (tests do): click caches a command's
    # help option the first time it runs, from that run's context, so the group's setting is not enough.
    command.context_settings = {**CONTEXT_SETTINGS, **command.context_settings}
    for sub in getattr(command, "commands", {}).values():
        _help_everywhere(sub)


_help_everywhere(main)
