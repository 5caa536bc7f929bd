"""The `convert-caffe` command."""
import click


@click.command()
def main() -> None:
    """Convert a Caffe .caffemodel (placeholder until the converter lands)."""
    raise click.ClickException("not implemented yet")
