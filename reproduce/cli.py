"""The `fcn` command: one click group; each sub-command lives in the module that does its work."""
import click


@click.group()
def main() -> None:
    """fcn-repro: reproduce the FCN paper's tables, Caffe-faithfully."""
