"""The dry run's inputs (reproduce.pipeline.dryrun): what the loopback mirror serves and the registry override.

The dry run itself (`make reproduce-voc-dryrun`, about 10 minutes at full width) is not part of the
test suite; these tests check its pieces at reduced width.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest

from reproduce.datasets.locate import find_in
from reproduce.pipeline.dryrun import _run, make_command, prepare, serve
from weight_convert.caffemodel import read_net


def test_prepare_packs_the_samples_in_the_official_layouts_with_their_checksums(tmp_path: Path) -> None:
    override = json.loads(prepare(tmp_path, width=1 / 16).read_text())
    by_name = {s["name"]: s for s in override["sources"]}
    assert set(by_name) == {"sbd", "voc2011", "vgg16"}
    for entry in by_name.values():
        served = tmp_path / "serve" / entry["filename"]
        assert entry["size"] == served.stat().st_size
        assert entry["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
        assert entry["md5"] is None and entry["sha1"] is None  # the official checksums are of the real files
    for name, layout, top in (("sbd", "sbd", "benchmark_RELEASE/dataset"), ("voc2011", "voc", "TrainVal/VOCdevkit/VOC2011")):
        unpacked = tmp_path / f"x-{name}"
        with tarfile.open(tmp_path / "serve" / by_name[name]["filename"]) as tar:
            tar.extractall(unpacked, filter="data")
        assert find_in(unpacked, layout, ()) == unpacked / top
    assert override["expected_counts"] == {"seg11valid": 3, "sbd/train": 4}
    net = read_net(tmp_path / "serve" / by_name["vgg16"]["filename"])
    assert [layer.name for layer in net.layers if layer.blobs][:2] == ["conv1_1", "conv1_2"]


def test_the_mirror_serves_the_prepared_files_byte_for_byte(tmp_path: Path) -> None:
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "f.bin").write_bytes(bytes(range(256)) * 100)
    server, url = serve(tmp_path / "serve")
    try:
        with urllib.request.urlopen(f"{url}/f.bin", timeout=10) as r:
            assert r.read() == (tmp_path / "serve" / "f.bin").read_bytes()
    finally:
        server.shutdown()
    assert url.startswith("http://127.0.0.1:")


def test_the_chain_is_make_reproduce_voc_on_the_cpu_through_the_mirror(tmp_path: Path) -> None:
    command = make_command(tmp_path, "http://127.0.0.1:1")
    assert "reproduce-voc" in command and "DEVICE=cpu" in command
    assert f"FETCH_FLAGS=--mirror http://127.0.0.1:1" in command
    assert any(c.startswith("TRAIN_FLAGS=--max-iter 2 ") for c in command)


_TRAPS_TERM = """
import pathlib, signal, sys, time
def stop(signum, frame):
    print("stopping cleanly", flush=True)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
pathlib.Path(sys.argv[1]).write_text("started")
time.sleep(60)
"""


@pytest.mark.parametrize("signum,status,clean", [(signal.SIGTERM, 143, True), (signal.SIGKILL, -9, False)])
def test_the_kill_is_the_chosen_signal_to_the_group_and_the_command_is_waited_for(
        tmp_path: Path, signum: int, status: int, clean: bool) -> None:
    marker, log = tmp_path / "started", tmp_path / "make.log"
    got, sent = _run([sys.executable, "-c", _TRAPS_TERM, str(marker)], dict(os.environ), log, marker, signum)
    assert sent and got == status
    assert ("stopping cleanly" in log.read_text()) == clean


def test_the_attempt_ends_when_its_last_process_does(tmp_path: Path) -> None:
    # A shell that dies at once while its child (a trainer writing its stop snapshot) goes on.
    log = tmp_path / "make.log"
    script = "(sleep 1; echo 'snapshot written') & exit 0"
    status, sent = _run(["sh", "-c", script], dict(os.environ), log, None)
    assert (status, sent) == (0, False)
    assert "snapshot written" in log.read_text()
