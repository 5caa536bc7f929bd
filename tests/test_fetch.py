"""`fcn data fetch` against an HTTP server started on 127.0.0.1 (no real network): resumed
transfers, refused checksums, atomic extraction."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from reproduce.datasets.cli import data_group
from reproduce.datasets.download import FetchError, download
from reproduce.datasets.fetch import fetch
from reproduce.datasets.sources import Source
from reproduce.datasets.split_lists import LISTS_DIR


class FileServer:
    """Serves bytes by path; supports `Range: bytes=N-`; can break a transfer off once."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}   # path -> bytes sent before the next full transfer breaks off
        self.no_range: set[str] = set()       # paths served without Range support (always 200)
        self.no_length: set[str] = set()      # paths served without Content-Length (end = connection close)
        self.bad_range: set[str] = set()      # paths whose resumes are answered with a range from byte 0
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                range_header = self.headers.get("Range")
                server.log.append((self.path, range_header))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header and self.path not in server.no_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if self.path in server.bad_range:
                        start = 0
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                if self.path in server.no_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(part[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    with FileServer() as s:
        yield s


def make_tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


MEMBERS = {f"toyset/images/{i:03d}.bin": bytes([i]) * (5000 + 97 * i) for i in range(40)}
MEMBERS["toyset/train.txt"] = "\n".join(f"{i:03d}" for i in range(40)).encode()


def toy_source(data: bytes, *, filename: str = "toyset.tar.gz", dest: str = "toyset", **checksums) -> Source:
    if not checksums:
        checksums = {"sha256": hashlib.sha256(data).hexdigest()}
    return Source(name="toyset", kind="dataset", url=f"http://example.invalid/{filename}", filename=filename,
                  dest=dest, description="toy", doc="README.md", checksum_origin="test", **checksums)


def hidden_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".toyset"))


def test_interrupted_transfer_is_resumed(server: FileServer, tmp_path: Path) -> None:
    archive = make_tar_gz(MEMBERS)
    server.files["/mirror/toyset.tar.gz"] = archive
    cut = len(archive) // 3
    server.cut_after["/mirror/toyset.tar.gz"] = cut
    dest = fetch(toy_source(archive), tmp_path, mirror=f"{server.url}/mirror/", retry_wait=0)
    assert dest == tmp_path / "toyset"
    for name, data in MEMBERS.items():
        assert (dest / name).read_bytes() == data
    # first request without Range, then a Range request from exactly the bytes already on disk
    assert server.log == [("/mirror/toyset.tar.gz", None), ("/mirror/toyset.tar.gz", f"bytes={cut}-")]
    assert not list((tmp_path / ".downloads").iterdir())  # archive removed after extraction
    assert hidden_leftovers(tmp_path) == []


def test_resumed_on_the_next_run(server: FileServer, tmp_path: Path) -> None:
    archive = make_tar_gz(MEMBERS)
    server.files["/toyset.tar.gz"] = archive
    server.cut_after["/toyset.tar.gz"] = 1000
    with pytest.raises(FetchError, match="run the same command again to resume"):
        fetch(toy_source(archive), tmp_path, mirror=server.url, retries=0, retry_wait=0)
    part = tmp_path / ".downloads" / "toyset.tar.gz.part"
    assert part.stat().st_size == 1000
    assert not (tmp_path / "toyset").exists()
    fetch(toy_source(archive), tmp_path, mirror=server.url, retries=0, retry_wait=0)
    assert server.log[-1] == ("/toyset.tar.gz", "bytes=1000-")
    assert (tmp_path / "toyset" / "toyset" / "train.txt").read_bytes() == MEMBERS["toyset/train.txt"]
    assert not part.exists()


def test_server_without_range_support_restarts(server: FileServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 400
    server.files["/w.caffemodel"] = data
    server.no_range.add("/w.caffemodel")
    server.cut_after["/w.caffemodel"] = 5000
    source = Source(name="w", kind="weights", url="http://x.invalid/w.caffemodel", filename="w.caffemodel",
                    dest="weights/w.caffemodel", description="", doc="", sha1=hashlib.sha1(data).hexdigest(),
                    checksum_origin="test")
    path = fetch(source, tmp_path, mirror=server.url, retry_wait=0)
    assert path.read_bytes() == data
    assert server.log[1] == ("/w.caffemodel", "bytes=5000-")  # asked to resume, got a full 200


def test_part_file_already_complete(server: FileServer, tmp_path: Path) -> None:
    data = b"abc" * 1000
    server.files["/f.bin"] = data
    part = tmp_path / "f.bin.part"
    part.write_bytes(data)
    assert download(f"{server.url}/f.bin", part, retry_wait=0) == len(data)  # 416 with matching size
    assert part.read_bytes() == data


def test_bad_checksum_refused_and_nothing_extracted(server: FileServer, tmp_path: Path) -> None:
    archive = make_tar_gz(MEMBERS)
    server.files["/toyset.tar.gz"] = archive
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(FetchError, match=f"sha256 mismatch for toyset: expected {wrong}"):
        fetch(toy_source(archive, sha256=wrong), tmp_path, mirror=server.url, retry_wait=0)
    assert not (tmp_path / "toyset").exists()
    assert list((tmp_path / ".downloads").iterdir()) == []  # the bad download is deleted
    bad_md5 = "0" * 32
    with pytest.raises(FetchError, match="md5 mismatch"):
        fetch(toy_source(archive, md5=bad_md5), tmp_path, mirror=server.url, retry_wait=0)
    ok = fetch(toy_source(archive, md5=hashlib.md5(archive).hexdigest()), tmp_path, mirror=server.url)
    assert (ok / "toyset" / "train.txt").exists()


def test_failure_mid_extraction_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    # the link member comes after 41 good members: extraction fails part-way through
    archive = make_tar_gz(MEMBERS, links={"toyset/escape": "/etc/passwd"})
    server.files["/toyset.tar.gz"] = archive
    with pytest.raises(FetchError, match="nothing was extracted into"):
        fetch(toy_source(archive), tmp_path, mirror=server.url, retry_wait=0)
    assert not (tmp_path / "toyset").exists()
    assert hidden_leftovers(tmp_path) == []


def test_truncated_archive_leaves_nothing_and_records_nothing(server: FileServer, tmp_path: Path) -> None:
    archive = make_tar_gz(MEMBERS)[:-3000]
    server.files["/toyset.tar.gz"] = archive
    unpinned = Source(name="toyset", kind="dataset", url="http://x.invalid/toyset.tar.gz",
                      filename="toyset.tar.gz", dest="toyset", description="", doc="")
    with pytest.raises(FetchError, match="archive is damaged or incomplete"):
        fetch(unpinned, tmp_path, mirror=server.url, retry_wait=0)
    assert not (tmp_path / "toyset").exists()
    assert hidden_leftovers(tmp_path) == []
    assert not (tmp_path / "checksums").exists()


def test_unsafe_zip_member_refused(server: FileServer, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "escape")
    data = buf.getvalue()
    server.files["/toyset.zip"] = data
    with pytest.raises(FetchError, match="unsafe path: '../evil.txt'"):
        fetch(toy_source(data, filename="toyset.zip"), tmp_path, mirror=server.url, retry_wait=0)
    assert not (tmp_path / "toyset").exists() and not (tmp_path / "evil.txt").exists()
    assert hidden_leftovers(tmp_path) == []


def test_zip_extracted(server: FileServer, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in MEMBERS.items():
            zf.writestr(name, content)
    data = buf.getvalue()
    server.files["/toyset.zip"] = data
    dest = fetch(toy_source(data, filename="toyset.zip"), tmp_path, mirror=server.url)
    assert (dest / "toyset" / "images" / "039.bin").read_bytes() == MEMBERS["toyset/images/039.bin"]


def test_unpinned_source_records_sha256_then_enforces_it(server: FileServer, tmp_path: Path) -> None:
    first = b"weights v1" * 100
    server.files["/m.caffemodel"] = first
    source = Source(name="m", kind="weights", url="http://x.invalid/m.caffemodel", filename="m.caffemodel",
                    dest="weights/m.caffemodel", description="", doc="")
    fetch(source, tmp_path, mirror=server.url)
    record = tmp_path / "checksums" / "m.caffemodel.sha256"
    assert record.read_text() == f"{hashlib.sha256(first).hexdigest()}  m.caffemodel\n"
    server.files["/m.caffemodel"] = b"weights v2" * 100
    with pytest.raises(FetchError, match="differs from the one an earlier fetch recorded"):
        fetch(source, tmp_path, mirror=server.url, force=True)
    assert (tmp_path / "weights" / "m.caffemodel").read_bytes() == first  # the installed file is untouched


def test_existing_destination_and_force(server: FileServer, tmp_path: Path) -> None:
    archive = make_tar_gz(MEMBERS)
    server.files["/toyset.tar.gz"] = archive
    fetch(toy_source(archive), tmp_path, mirror=server.url)
    n_requests = len(server.log)
    fetch(toy_source(archive), tmp_path, mirror=server.url)  # already present: nothing downloaded
    assert len(server.log) == n_requests
    newer = make_tar_gz({"toyset/only.txt": b"new"})
    server.files["/toyset.tar.gz"] = newer
    fetch(toy_source(newer), tmp_path, mirror=server.url, force=True)
    assert sorted(p.name for p in (tmp_path / "toyset" / "toyset").iterdir()) == ["only.txt"]
    assert hidden_leftovers(tmp_path) == []


def test_from_file(tmp_path: Path) -> None:
    archive = make_tar_gz(MEMBERS)
    local = tmp_path / "mine.tar.gz"
    local.write_bytes(archive)
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(toy_source(archive, sha256="f" * 64), tmp_path / "data", from_file=local)
    assert local.read_bytes() == archive  # the user's own file is never deleted
    dest = fetch(toy_source(archive), tmp_path / "data", from_file=local)
    assert (dest / "toyset" / "train.txt").exists() and local.exists()


def test_http_error(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(toy_source(b"x"), tmp_path, mirror=server.url, retry_wait=0)


# ---------------------------------------------------------------- through the CLI, real registry entry

def test_cli_fetch_voc2011_lists_from_mirror(server: FileServer, tmp_path: Path) -> None:
    good = (LISTS_DIR / "pascal" / "seg11valid.txt").read_bytes()
    server.files["/fcn/seg11valid.txt"] = good
    server.cut_after["/fcn/seg11valid.txt"] = 4000
    runner = CliRunner()
    result = runner.invoke(data_group, ["fetch", "voc2011-lists", "--mirror", f"{server.url}/fcn",
                                        "--data-root", str(tmp_path), "--retry-wait", "0"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "voc2011-lists" / "seg11valid.txt").read_bytes() == good
    assert "resuming" in result.output
    check = runner.invoke(data_group, ["check", "voc2011-lists", "--data-root", str(tmp_path)])
    assert check.exit_code == 0, check.output
    assert "seg11valid.txt: 736 ids" in check.output and "sha256 verified" in check.output


def test_cli_bad_checksum_exit_status(server: FileServer, tmp_path: Path) -> None:
    good = (LISTS_DIR / "pascal" / "seg11valid.txt").read_bytes()
    server.files["/seg11valid.txt"] = good[:-12] + b"2007_000033\n"  # the right size, another content
    result = CliRunner().invoke(data_group, ["fetch", "voc2011-lists", "--mirror", server.url,
                                             "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    assert "sha256 mismatch for voc2011-lists" in result.output
    assert not (tmp_path / "voc2011-lists").exists()


def test_cli_server_announcing_another_size_is_refused_before_downloading(server: FileServer, tmp_path: Path) -> None:
    server.files["/seg11valid.txt"] = b"2007_000033\n"
    result = CliRunner().invoke(data_group, ["fetch", "voc2011-lists", "--mirror", server.url,
                                             "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    assert "the server announces 12 bytes, the registry expects 8832" in result.output
    assert not (tmp_path / "voc2011-lists").exists() and not list((tmp_path / ".downloads").iterdir())


def test_cli_unknown_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(data_group, ["fetch", "imagenet", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "unknown name 'imagenet'" in result.output


# ---------------------------------------------------------------- issue 13: faults injected into a fetch

WIDTH = 1 / 16  # the content checks build the nets at this width (the registry's real files are full width)


def caffemodel_bytes(tmp_path: Path, net_name: str) -> bytes:
    from test_fetch_check import write_fcn_caffemodel
    path = tmp_path / f"{net_name}.caffemodel"
    write_fcn_caffemodel(path, net_name, WIDTH)
    return path.read_bytes()


def cifar_caffemodel(path: Path) -> Path:
    """A small classifier that is not VGG16 (the CIFAR-10 quick net's layer names and shapes)."""
    import numpy as np
    from weight_convert.caffe_writer import write_caffemodel
    rng = np.random.default_rng(0)
    layers = [("conv1", "Convolution", [rng.normal(size=(32, 3, 5, 5)).astype(np.float32), np.zeros(32, np.float32)]),
              ("conv2", "Convolution", [rng.normal(size=(32, 32, 5, 5)).astype(np.float32), np.zeros(32, np.float32)]),
              ("ip1", "InnerProduct", [rng.normal(size=(64, 512)).astype(np.float32), np.zeros(64, np.float32)]),
              ("ip2", "InnerProduct", [rng.normal(size=(10, 64)).astype(np.float32), np.zeros(10, np.float32)])]
    write_caffemodel(path, "CIFAR10_quick", layers)
    return path


def nothing_installed(root: Path, source: Source) -> bool:
    return not (root / source.dest).exists() and not (root / "checksums").exists() and \
        not any((root / ".downloads").glob(source.filename + "*"))


def test_no_content_length_cut_in_half_is_never_installed_nor_pinned(server: FileServer, tmp_path: Path) -> None:
    """The reported fault: voc-fcn8s from a --mirror that sends no Content-Length and stops at half."""
    from reproduce.datasets.sources import get_source
    source = get_source("voc-fcn8s")
    good = caffemodel_bytes(tmp_path, "voc-fcn8s")
    path = f"/m/{source.filename}"
    server.files[path] = good
    server.no_length.add(path)
    server.cut_after[path] = len(good) // 2
    root = tmp_path / "data"
    with pytest.raises(FetchError, match="is not a complete voc-fcn8s.*nothing was installed or recorded"):
        fetch(source, root, mirror=f"{server.url}/m", retry_wait=0, width=WIDTH)
    assert nothing_installed(root, source)
    fetch(source, root, mirror=f"{server.url}/m", retry_wait=0, width=WIDTH)  # the whole file: installed, pinned
    assert (root / source.dest).read_bytes() == good
    assert (root / "checksums" / f"{source.filename}.sha256").read_text().startswith(hashlib.sha256(good).hexdigest())


def test_no_content_length_with_known_size_resumes_the_short_transfer(server: FileServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 300
    server.files["/w.bin"] = data
    server.no_length.add("/w.bin")
    server.cut_after["/w.bin"] = 10_000
    source = Source(name="w", kind="list", url="http://x.invalid/w.bin", filename="w.bin", dest="w/w.bin",
                    description="", doc="", size=len(data))
    assert fetch(source, tmp_path, mirror=server.url, retry_wait=0).read_bytes() == data
    assert server.log == [("/w.bin", None), ("/w.bin", "bytes=10000-")]
    # a file one byte short: kept as a .part to resume; the rerun finds the server has no more, refuses it
    server.files["/w.bin"] = data[:-1]
    again = tmp_path / "again"
    with pytest.raises(FetchError, match="76799 bytes kept in"):
        fetch(source, again, mirror=server.url, retries=0, retry_wait=0)
    assert not (again / source.dest).exists() and not (again / "checksums").exists()
    with pytest.raises(FetchError, match="76799 bytes, w is 76800 bytes .*the download was deleted"):
        fetch(source, again, mirror=server.url, retries=0, retry_wait=0)
    assert nothing_installed(again, source)


def test_from_file_cifar_model_offered_as_vgg16_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace
    from reproduce.datasets.sources import get_source
    cifar = cifar_caffemodel(tmp_path / "cifar10_quick.caffemodel")
    before = cifar.read_bytes()
    root = tmp_path / "data"
    with pytest.raises(FetchError, match=r"bytes, vgg16 is 553432081 bytes.*--from-file .* was refused"):
        fetch(get_source("vgg16"), root, from_file=cifar)
    unsized = replace(get_source("vgg16"), size=None)  # past the size: the content check refuses it too
    with pytest.raises(FetchError, match=r"not a complete vgg16: .*does not hold vgg16: it lacks conv1_1"):
        fetch(unsized, root, from_file=cifar, width=WIDTH)
    assert nothing_installed(root, unsized) and cifar.read_bytes() == before
    result = CliRunner().invoke(data_group, ["check", "vgg16", "--data-root", str(root)])
    assert result.exit_code == 1 and "vgg16: INCOMPLETE" in result.output


def test_vgg16_shaped_file_with_a_wrong_shape_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace
    from reproduce.datasets.sources import get_source
    from reproduce.pipeline.smoke import vgg16_layers
    from weight_convert.caffe_writer import write_caffemodel
    unsized = replace(get_source("vgg16"), size=None)
    layers = vgg16_layers(WIDTH)
    good = write_caffemodel(tmp_path / "good.caffemodel", "VGG_ILSVRC_16_layers", layers, version=1) or tmp_path / "good.caffemodel"
    fetch(unsized, tmp_path / "ok", from_file=good, width=WIDTH)  # the right layers and shapes: installed
    assert (tmp_path / "ok" / unsized.dest).is_file()
    name, kind, (w, b) = layers[3]  # conv2_2 with one output channel short
    layers[3] = (name, kind, [w[:-1], b[:-1]])
    write_caffemodel(tmp_path / "bad.caffemodel", "VGG_ILSVRC_16_layers", layers, version=1)
    with pytest.raises(FetchError, match="conv2_2"):
        fetch(unsized, tmp_path / "bad", from_file=tmp_path / "bad.caffemodel", width=WIDTH)
    assert nothing_installed(tmp_path / "bad", unsized)


def test_resume_answered_with_a_wrong_range_restarts_from_byte_zero(server: FileServer, tmp_path: Path) -> None:
    archive = make_tar_gz(MEMBERS)
    server.files["/toyset.tar.gz"] = archive
    server.bad_range.add("/toyset.tar.gz")
    part = tmp_path / ".downloads" / "toyset.tar.gz.part"
    part.parent.mkdir()
    part.write_bytes(archive[:1000])
    dest = fetch(toy_source(archive), tmp_path, mirror=server.url, retries=1, retry_wait=0)
    assert (dest / "toyset" / "train.txt").read_bytes() == MEMBERS["toyset/train.txt"]
    assert server.log == [("/toyset.tar.gz", "bytes=1000-"), ("/toyset.tar.gz", None)]
    assert not part.exists()


def test_part_longer_than_the_known_size_is_discarded(server: FileServer, tmp_path: Path) -> None:
    data = b"x" * 5000
    server.files["/f.bin"] = data
    part = tmp_path / "f.bin.part"
    part.write_bytes(b"y" * 6000)
    assert download(f"{server.url}/f.bin", part, retry_wait=0, expected_size=5000) == 5000
    assert part.read_bytes() == data and server.log == [("/f.bin", None)]


def closed_port_url() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("mirror", [False, True])
def test_offline_names_what_was_tried_and_the_ways_out(tmp_path: Path, mirror: bool) -> None:
    url = closed_port_url()
    source = Source(name="vgg16", kind="weights", url=f"{url}/official/VGG_ILSVRC_16_layers.caffemodel",
                    filename="VGG_ILSVRC_16_layers.caffemodel", dest="weights/VGG_ILSVRC_16_layers.caffemodel",
                    description="", doc="")
    with pytest.raises(FetchError) as info:
        fetch(source, tmp_path, mirror=f"{url}/m" if mirror else None, retries=2, retry_wait=0)
    message = str(info.value)
    tried = f"{url}/m/VGG_ILSVRC_16_layers.caffemodel (the --mirror" if mirror else f"{source.url} (the official URL)"
    assert f"tried {tried}" in message and "after 3 attempts" in message
    for way_out in ("--mirror URL", "--from-file PATH", "make reproduce-smoke"):
        assert way_out in message
    assert ".part" not in message and "resume" not in message and "nothing was downloaded" in message
    assert not list((tmp_path / ".downloads").iterdir())


def test_offline_with_a_partial_download_says_where_it_is_kept(server: FileServer, tmp_path: Path) -> None:
    data = b"z" * 20000
    server.files["/f.bin"] = data
    server.cut_after["/f.bin"] = 7000
    source = Source(name="f", kind="list", url="http://x.invalid/f.bin", filename="f.bin", dest="f/f.bin",
                    description="", doc="")
    with pytest.raises(FetchError, match=r"7000 bytes kept in .*f\.bin\.part: run the same command again to resume"):
        fetch(source, tmp_path, mirror=server.url, retries=0, retry_wait=0)
    server.httpd.shutdown()  # now offline: the kept bytes are still named, with the ways out
    with pytest.raises(FetchError, match=r"7000 bytes kept .*--mirror URL.*--from-file PATH.*make reproduce-smoke"):
        fetch(source, tmp_path, mirror=closed_port_url(), retries=0, retry_wait=0)


def test_recorded_checksums_are_listed_and_forgotten(server: FileServer, tmp_path: Path) -> None:
    from reproduce.datasets.sources import get_source
    source = get_source("voc-fcn32s")
    wrong = caffemodel_bytes(tmp_path, "voc-fcn32s")
    server.files[f"/{source.filename}"] = wrong
    root = tmp_path / "data"
    fetch(source, root, mirror=server.url, width=WIDTH)
    runner = CliRunner()
    listed = runner.invoke(data_group, ["checksums", "--data-root", str(root)])
    assert listed.exit_code == 0 and f"voc-fcn32s" in listed.output
    assert hashlib.sha256(wrong).hexdigest() in listed.output
    # another (the right) file is refused, and the refusal names the command that forgets the record
    import torch
    torch.manual_seed(12345)
    (tmp_path / "other").mkdir()
    right = caffemodel_bytes(tmp_path / "other", "voc-fcn32s")  # other random weights: another valid voc-fcn32s
    assert right != wrong
    server.files[f"/{source.filename}"] = right
    with pytest.raises(FetchError, match=f"fcn data forget voc-fcn32s --data-root {root}"):
        fetch(source, root, mirror=server.url, force=True, width=WIDTH)
    forgot = runner.invoke(data_group, ["forget", "voc-fcn32s", "--data-root", str(root)])
    assert forgot.exit_code == 0 and "forgot the recorded sha256" in forgot.output
    fetch(source, root, mirror=server.url, force=True, width=WIDTH)
    assert (root / source.dest).read_bytes() == right
    assert hashlib.sha256(right).hexdigest() in runner.invoke(data_group, ["checksums", "--data-root", str(root)]).output


# ---------------------------------------------------------------- the FCN_SOURCES registry override

def test_override_gives_sizes_checksums_and_split_sizes(server: FileServer, tmp_path: Path, monkeypatch) -> None:
    """The dry run's override: the samples packed as the official VOC2011 and SBD archives, served
    by a mirror, fetched and checked through the CLI with the override's sha256, size and counts."""
    from reproduce.pipeline.dryrun import prepare
    from reproduce.datasets.sources import SOURCES, get_source
    override = prepare(tmp_path / "dry", width=WIDTH)
    for f in (tmp_path / "dry" / "serve").iterdir():
        server.files[f"/{f.name}"] = f.read_bytes()
    monkeypatch.setenv("FCN_SOURCES", str(override))
    entry = {e["name"]: e for e in json.loads(override.read_text())["sources"]}
    assert get_source("voc2011").sha256 == entry["voc2011"]["sha256"] and get_source("voc2011").md5 is None
    assert get_source("sbd").size == entry["sbd"]["size"] and SOURCES["sbd"].size is None  # built-in untouched
    runner = CliRunner()
    root = tmp_path / "data"
    for name in ("sbd", "voc2011"):
        result = runner.invoke(data_group, ["fetch", name, "--mirror", server.url, "--data-root", str(root)])
        assert result.exit_code == 0, result.output
        assert "from the registry override" in result.output
        check = runner.invoke(data_group, ["check", name, "--data-root", str(root)])
        assert check.exit_code == 0, check.output
    fetch(get_source("vgg16"), root, mirror=server.url, width=WIDTH)
    monkeypatch.delenv("FCN_SOURCES")  # without it, the same data fail the real split sizes
    assert runner.invoke(data_group, ["check", "sbd", "--data-root", str(root)]).exit_code == 1


def test_archive_failing_the_layout_check_is_not_installed(server: FileServer, tmp_path: Path, monkeypatch) -> None:
    from reproduce.pipeline.dryrun import prepare
    from reproduce.datasets.sources import get_source
    override = prepare(tmp_path / "dry", width=WIDTH)
    data = json.loads(override.read_text())
    with tarfile.open(tmp_path / "dry" / "serve" / "VOCtrainval_25-May-2011.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    dropped = next(n for n in members if n.endswith(".png"))
    del members[dropped]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    incomplete = buf.getvalue()
    for e in data["sources"]:
        if e["name"] == "voc2011":
            e.update(sha256=hashlib.sha256(incomplete).hexdigest(), size=len(incomplete))
    override.write_text(json.dumps(data))
    monkeypatch.setenv("FCN_SOURCES", str(override))
    server.files["/VOCtrainval_25-May-2011.tar"] = incomplete
    root = tmp_path / "data"
    with pytest.raises(FetchError, match=f"seg11valid images and labels missing: .*{Path(dropped).name}"):
        fetch(get_source("voc2011"), root, mirror=server.url)
    assert not (root / "voc2011").exists() and not any(p.name.startswith(".voc2011") for p in root.iterdir())
    assert not list((root / ".downloads").iterdir())


def test_override_errors_name_the_file(tmp_path: Path, monkeypatch) -> None:
    from reproduce.datasets.sources import SourcesOverrideError, get_source
    bad = tmp_path / "o.json"
    for content, message in (("{", "cannot read"), ('{"sources": [{"name": "imagenet"}]}', "names no known source"),
                             ('{"sources": [{"name": "sbd", "sha512": "0"}]}', "unknown fields sha512")):
        bad.write_text(content)
        monkeypatch.setenv("FCN_SOURCES", str(bad))
        with pytest.raises(SourcesOverrideError, match=message):
            get_source("sbd")
    result = CliRunner().invoke(data_group, ["fetch", "sbd", "--data-root", str(tmp_path)])
    assert result.exit_code == 1 and "o.json ($FCN_SOURCES)" in result.output
