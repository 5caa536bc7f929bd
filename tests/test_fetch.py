"""`fcn data fetch` against an HTTP server started on 127.0.0.1 (no real network): resumed
transfers, refused checksums, atomic extraction."""
from __future__ import annotations

import hashlib
import io
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
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
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
    server.files["/seg11valid.txt"] = b"2007_000033\n"
    result = CliRunner().invoke(data_group, ["fetch", "voc2011-lists", "--mirror", server.url,
                                             "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    assert "sha256 mismatch for voc2011-lists" in result.output
    assert not (tmp_path / "voc2011-lists").exists()


def test_cli_unknown_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(data_group, ["fetch", "imagenet", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "unknown name 'imagenet'" in result.output
