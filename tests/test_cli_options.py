"""Each shared option (--data-root, --device, --width, --workers) is the one defined in
reproduce/commands/cli_options.py: every command of `fcn` and `convert-caffe` that takes it has the same
default, help, type and environment variable."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from reproduce.commands import cli_options
from reproduce.commands.cli import main as fcn
from weight_convert.cli import main as convert_caffe

SHARED = ("--data-root", "--device", "--width", "--workers")

#: Commands whose option of a shared name is deliberately another option (say why here):
#: `fcn smoke vgg16 --width` is the width of the synthetic caffemodel it writes (default 1/16, the
#: smoke run's), not the width of weights being read.
EXCEPTIONS = {("smoke", "vgg16", "--width")}


def _commands(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, path + (name,))


def _uses() -> dict[str, list[tuple[tuple[str, ...], click.Option]]]:
    found: dict[str, list] = {name: [] for name in SHARED}
    for root, tree in (("fcn", fcn), ("convert-caffe", convert_caffe)):
        for path, command in _commands(tree, ()):
            for param in command.params:
                for name in SHARED:
                    if isinstance(param, click.Option) and name in param.opts:
                        if path + (name,) not in EXCEPTIONS:
                            found[name].append(((root,) + path, param))
    return found


USES = _uses()


def _reference(name: str) -> click.Option:
    """The click.Option that cli_options defines for `name` (applied to a throwaway command)."""
    decorator = {"--data-root": cli_options.DATA_ROOT, "--device": cli_options.DEVICE,
                 "--width": cli_options.WIDTH, "--workers": cli_options.WORKERS}[name]
    return decorator(click.command()(lambda **kw: None)).params[0]


def _signature(option: click.Option) -> tuple:
    kind = option.type
    bounds = (getattr(kind, "min", None), getattr(kind, "max", None), getattr(kind, "min_open", None))
    return (option.default, option.help, option.envvar, option.show_default, type(kind).__name__, bounds)


def test_the_walk_finds_every_command_that_takes_them():
    commands = {name: {" ".join(p) for p, _ in uses} for name, uses in USES.items()}
    assert {"fcn train", "fcn eval", "fcn data fetch", "fcn data check"} <= commands["--data-root"]
    assert {"fcn train", "fcn eval", "fcn infer", "fcn figure grid", "fcn check-device"} <= commands["--device"]
    assert {"fcn train", "fcn eval", "fcn infer", "fcn figure grid", "fcn export caffe",
            "convert-caffe"} <= commands["--width"]
    assert "fcn eval" in commands["--workers"]


@pytest.mark.parametrize("name", SHARED)
def test_every_use_is_the_shared_definition(name):
    want = _signature(_reference(name))
    differing = [" ".join(path) for path, option in USES[name] if _signature(option) != want]
    assert not differing, f"{name} defined differently (not from reproduce/commands/cli_options.py) in: {differing}"


def test_width_default_is_none_meaning_the_record():
    assert _reference("--width").default is None
    assert "records" in _reference("--width").help


def test_fetch_creates_the_data_root_but_train_and_eval_need_it(tmp_path):
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(fcn, ["eval", "voc-fcn32s", "--weights", __file__, "--data-root", str(missing)])
    assert result.exit_code == 2 and "nowhere" in result.output and "does not exist" in result.output
    option = dict((" ".join(p), o) for p, o in USES["--data-root"])["fcn data fetch"]
    assert option.type.exists is False


def test_data_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cli_options.DATA_ROOT_ENV, str(tmp_path / "from-env"))
    result = CliRunner().invoke(fcn, ["eval", "voc-fcn32s", "--weights", __file__])
    assert result.exit_code == 2 and "from-env" in result.output
