"""reproduce.progress (lines without a terminal, the bar with one) and reproduce.training.stop_signals' helpers."""
import io
import os
import signal

import pytest

from reproduce import progress
from reproduce.progress import Progress, duration, track
from reproduce.training.stop_signals import StopSignals, exit_status, resume_hint


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (0, 12.4, 205, 7380, 110967)] == ["0s", "12s", "3m 25s", "2h 03m", "1d 06:49:27"]
    assert duration(float("inf")) == "unknown"


def test_the_interval_comes_from_the_environment_and_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.delenv(progress.ENV_INTERVAL, raising=False)
    assert progress.interval_seconds() == 30.0
    monkeypatch.setenv(progress.ENV_INTERVAL, "2.5")
    assert progress.interval_seconds() == 2.5
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv(progress.ENV_INTERVAL, bad)
        with pytest.raises(ValueError, match="FCN_PROGRESS_SECONDS"):
            progress.interval_seconds()


def test_without_a_terminal_lines_at_start_every_interval_and_end():
    out = io.StringIO()  # not a terminal
    with Progress("eval x", 3, unit="image", stream=out, interval=0) as bar:
        for _ in track(range(3), bar):
            pass
    lines = out.getvalue().splitlines()
    assert lines[0] == "eval x: image 0/3 (0%), starting"
    assert [line.split(",")[0] for line in lines[1:]] == ["eval x: image 1/3 (33.3%)", "eval x: image 2/3 (66.7%)",
                                                          "eval x: image 3/3 (100%)"]
    assert "images/s, ETA" in lines[1] and "done in" in lines[-1]


def test_a_long_interval_prints_only_start_and_end_and_a_stop_says_stopped():
    out = io.StringIO()
    with pytest.raises(KeyError):
        with Progress("run", 10, start=4, stream=out, interval=3600) as bar:
            for i in range(5, 8):
                bar.update(i, loss=1.23456, lr=1e-10)
            raise KeyError("x")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == "run: iteration 4/10 (40%), resuming"
    assert lines[1].startswith("run: iteration 7/10 (70%), loss 1.235, lr 1e-10, ") and "stopped after" in lines[1]


def test_on_a_terminal_the_bar_and_no_lines_and_show_false_prints_nothing():
    out = io.StringIO()
    with Progress("run", 4, stream=out, tty=True, interval=0) as bar:
        bar.update(2, loss=1.0)
    assert "starting" not in out.getvalue() and "run" in out.getvalue()
    quiet = io.StringIO()
    with Progress("run", 4, stream=quiet, show=False) as bar:
        bar.update(4)
    assert quiet.getvalue() == ""


def test_resume_hint_names_the_command_make_or_torchrun():
    cmd = ["fcn", "train", "voc-fcn32s", "--out", "runs/a b"]
    assert resume_hint(cmd, {}) == "rerun the same command (resume is automatic): fcn train voc-fcn32s --out 'runs/a b'"
    assert resume_hint(cmd, {"MAKELEVEL": "1"}).startswith("rerun the same make target (resume is automatic), or: fcn")
    assert resume_hint(cmd, {"WORLD_SIZE": "4"}).startswith("rerun the same torchrun command")
    assert exit_status(signal.SIGINT) == 130 and exit_status(signal.SIGTERM) == 143


def test_stop_signals_records_the_first_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals("t") as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # a second one: noted, the first stays
        assert stop.requested == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_bytes_are_shown_in_mib_and_an_unknown_total_has_no_percentage():
    out = io.StringIO()
    with Progress("downloading x.tar", 4 * 2**20, unit="byte", start=2**20, stream=out, interval=0) as bar:
        bar.advance(2**20)
        bar.advance(2 * 2**20)
    lines = out.getvalue().splitlines()
    assert lines[0] == "downloading x.tar: 1.0/4.0 MiB (25%), resuming"
    assert lines[1].startswith("downloading x.tar: 2.0/4.0 MiB (50%), ") and " MiB/s, ETA " in lines[1]
    assert lines[-1].startswith("downloading x.tar: 4.0/4.0 MiB (100%), ") and "done in" in lines[-1]
    unknown = io.StringIO()
    with Progress("downloading y", None, unit="byte", stream=unknown, interval=0) as bar:
        bar.advance(3 * 2**20)
    lines = unknown.getvalue().splitlines()
    assert lines[0] == "downloading y: 0.0 MiB, starting"
    assert lines[-1].startswith("downloading y: 3.0 MiB, ") and "ETA" not in lines[-1] and "done in" in lines[-1]


def test_the_terminal_bar_redraws_one_line_and_ends_it():
    out = io.StringIO()
    with Progress("eval x", 4, unit="image", stream=out, tty=True, interval=0) as bar:
        bar.update(4)
    text = out.getvalue()
    assert text.startswith("\reval x  [") and text.endswith("\n") and text.count("\n") == 1
    assert text.rstrip("\n").rsplit("\r", 1)[1].startswith("eval x  [" + "#" * progress.BAR_WIDTH + "]  100%  4/4")


def test_a_bad_interval_is_one_line_from_every_command(monkeypatch) -> None:
    from click.testing import CliRunner

    from reproduce.commands.cli import main
    monkeypatch.setenv("FCN_PROGRESS_SECONDS", "soon")
    for args in (["data", "check", "sbd"], ["infer", "voc-fcn8s", "x.png"], ["upper-bound", "--help"][:1]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "FCN_PROGRESS_SECONDS='soon'" in result.output and "Traceback" not in result.output
