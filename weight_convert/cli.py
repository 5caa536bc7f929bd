"""The ``convert-caffe`` command: .caffemodel -> PyTorch state dict (.pt), HDF5 (.h5) or .npz.

Exit status: 0 on success; 2 for any error (unreadable or corrupted caffemodel, unknown --net,
a shape that does not fit, a parameter left unfilled without --from, a source with no weights,
an existing DST without --force). On error DST is not created (everything is written to a
temporary file that is renamed onto DST at the end); the temporaries a killed conversion leaves
are removed by the next conversion to the same DST.
"""
from __future__ import annotations

from pathlib import Path

import click

import nets
from reproduce.commands.cli_options import WIDTH
from . import record
from .convert import BASE_NETS, convert, describe_layers
from .errors import CaffeFormatError, WeightMismatchError
from .provenance import describe
from .sources import open_source
from .writers import SUFFIXES, remove_stale_temporaries


#: Every command of the project takes -h as well as --help (subcommands inherit it from their group).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def version_option(program: str):
    """A --version flag printing `provenance.describe(program)` (version and git commit, computed
    only when asked) and exiting."""
    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(describe(program))
            ctx.exit()
    return click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=show,
                        help="Print the fcn-repro version (and git commit in a checkout) and exit.")


class ConvertError(click.ClickException):
    """A conversion error: printed as 'Error: ...', exit status 2."""

    exit_code = 2


@click.command(context_settings=CONTEXT_SETTINGS)
@version_option("convert-caffe (fcn-repro)")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--net", "net_name", type=click.Choice(nets.names()), default=None,
              help="Target net: write its state dict (Caffe layer names), checking every shape. "
                   "Without it, every blob is dumped as '<layer>/<index>'.")
@click.option("--from", "from_name", type=click.Choice(list(BASE_NETS) + nets.names()), default=None,
              help="What SRC holds (a net name, or vgg16 / alexnet / googlenet): initialize --net from it as "
                   "the reference does (fc6/fc7 surgery, fc8 dropped, new layers keep their init; GoogLeNet: "
                   "its classifiers dropped).")
@click.option("--hha", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Late-fusion nets: the HHA FCN-32s (SRC is then the colour FCN-32s).")
@WIDTH
@click.option("--list", "list_layers", is_flag=True, help="Print SRC's layers, types and blob shapes.")
@click.option("--force", is_flag=True, help="Replace DST if it exists (never SRC or --hha).")
def main(src: Path, dst: Path | None, net_name: str | None, from_name: str | None, hha: Path | None,
         width: float | None, list_layers: bool, force: bool) -> None:
    """Convert the Caffe weights in SRC (.caffemodel, or a converted .pt) to DST (.pt, .h5 or .npz)."""
    if dst is None and not list_layers:
        raise click.UsageError("missing DST (or use --list)")
    if dst is not None and dst.suffix.lower() not in SUFFIXES:
        raise click.BadParameter(f"{dst}: the output format follows the suffix: {', '.join(SUFFIXES)}",
                                 param_hint="DST")
    if dst is not None:
        check_destination(dst, [src] + ([hha] if hha is not None else []), force)
        stale = remove_stale_temporaries(dst)
        if stale:
            click.echo(f"removed {len(stale)} temporary file(s) left by an interrupted conversion to "
                       f"{dst}: {', '.join(p.name for p in stale)}")
    try:
        if list_layers:
            source = open_source(src)
            for line in describe_layers(source):
                click.echo(line)
            if dst is None:
                return
        try:  # --width left out: the width SRC's record says (a converted .pt), else full width
            width = record.resolve(record.read(src), src, width=width, check_net=False).width
        except ValueError as e:  # a record that is not valid, or contradicts --width
            raise ConvertError(str(e)) from None
        result = convert(src, dst, net_name=net_name, from_name=from_name, width=width, hha=hha,
                         on_report=lambda report: click.echo("\n".join(report.lines())))
    except (CaffeFormatError, WeightMismatchError) as e:
        raise ConvertError(str(e)) from None
    except OSError as e:
        raise ConvertError(f"{e.filename or src}: {e.strerror or e}") from None
    click.echo(f"wrote {result.dst} ({len(result.entries)} arrays)")


def check_destination(dst: Path, inputs: list[Path], force: bool) -> None:
    """Refuse a DST that is one of the inputs (even with --force), or that exists without --force."""
    for path in inputs:
        if dst.resolve() == path.resolve() or (dst.exists() and dst.samefile(path)):
            raise ConvertError(f"{dst}: DST is the input file {path}; write the result elsewhere")
    if (dst.exists() or dst.is_symlink()) and not force:
        raise ConvertError(f"{dst} already exists: not overwriting it (give --force to replace it)")


if __name__ == "__main__":  # pragma: no cover
    main()
