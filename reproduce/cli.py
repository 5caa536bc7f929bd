"""The `fcn` command: one click group; each sub-command lives in the module that does its work."""
import click

from reproduce.tables import tables_command
from reproduce.upper_bound import upper_bound_command


@click.group()
def main() -> None:
    """fcn-repro: reproduce the FCN paper's tables, Caffe-faithfully."""


main.add_command(tables_command, "tables")
main.add_command(upper_bound_command, "upper-bound")
