"""``headlens download`` against a local HTTP server: resume, checksums, unpacking, the CLI.

Nothing here reaches the network: every resource is built in the test and points at a
``ThreadingHTTPServer`` on 127.0.0.1 that serves files from a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import re
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from headlens import archives, download as dl, resources
from headlens.download import ChecksumError, DownloadError, Remote, Resource, UnsafeArchiveError
from headlens.errors import UnsafeFileError

SIZE = 300_000


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.root``; honours ``Range: bytes=N-`` with 206, and 416 past the end."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = self.server
        server.requests.append({"path": self.path, "range": self.headers.get("Range")})
        file = server.root / self.path.lstrip("/")
        if not file.is_file():
            self.send_error(404, "no such file")
            return
        data = file.read_bytes()
        start = self.range_start(len(data))
        if start is not None and start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if start is None:
            self.send_response(200)
            start = 0
        else:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", self.accept_ranges)
        self.end_headers()
        self.send_body(body)

    accept_ranges = "bytes"

    def range_start(self, size: int) -> int | None:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        return int(match.group(1)) if match else None

    def send_body(self, body: bytes) -> None:
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class CuttingHandler(RangeHandler):
    """Like :class:`RangeHandler`, but the first ``server.cut_after`` reply stops after that many bytes."""

    def send_body(self, body: bytes) -> None:
        cut, self.server.cut_after = self.server.cut_after, None
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True  # the peer sees the connection close mid-body


class NoRangeHandler(RangeHandler):
    """A server without range support: ignores ``Range`` and always sends the whole file with 200."""

    accept_ranges = "none"

    def range_start(self, size: int) -> int | None:
        return None


class NoLengthHandler(RangeHandler):
    """Sends every file whole with 200 and no ``Content-Length`` (the body ends when the connection
    closes); the first reply stops after ``server.cut_after`` bytes."""

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = (self.server.root / self.path.lstrip("/")).read_bytes()
        cut, self.server.cut_after = self.server.cut_after, None
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data if cut is None else data[:cut])
        self.close_connection = True


@pytest.fixture
def serve(tmp_path):
    """``serve(handler)`` → a running server; ``.url(name)``, ``.root``, ``.requests``."""
    servers = []

    def start(handler=RangeHandler, cut_after: int | None = None):
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.root = tmp_path / "served"
        server.root.mkdir(exist_ok=True)
        server.requests = []
        server.cut_after = cut_after
        server.url = lambda name: f"http://127.0.0.1:{server.server_address[1]}/{name}"
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def blob(size: int = SIZE, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_file(url: str, dest: str = "sub/blob.bin", **kwargs) -> Resource:
    return Resource("test-blob", (Remote(url, dest, **kwargs),), "a test file")


def test_plain_download_lands_at_its_destination(serve, tmp_path):
    server = serve()
    data = blob()
    (server.root / "blob.bin").write_bytes(data)
    data_dir = tmp_path / "data"
    result = dl.download(one_file(server.url("blob.bin"), sha256=sha(data)), data_dir, progress=False)
    dest = data_dir / "sub" / "blob.bin"
    assert result == [(dest, "downloaded")]
    assert dest.read_bytes() == data
    assert not dest.with_name("blob.bin.part").exists()
    assert server.requests == [{"path": "/blob.bin", "range": None}]
    # a second run finds the file, checks it, and asks the server nothing
    assert dl.download(one_file(server.url("blob.bin"), sha256=sha(data)), data_dir, progress=False) == [
        (dest, "already present (sha256 ok)")
    ]
    assert dl.download(one_file(server.url("blob.bin")), data_dir, progress=False) == [(dest, "already present")]
    assert len(server.requests) == 1


def test_interrupted_transfer_is_resumed_with_a_range_request(serve, tmp_path):
    server = serve(CuttingHandler, cut_after=100_000)
    data = blob(seed=1)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "data" / "blob.bin"
    with pytest.raises(DownloadError) as error:
        dl.fetch(server.url("blob.bin"), dest, sha256=sha(data), progress=False)
    message = str(error.value)
    assert server.url("blob.bin") in message and "re-run the command to resume" in message
    assert "100000 of 300000 bytes" in message
    part = dest.with_name("blob.bin.part")
    assert not dest.exists() and part.read_bytes() == data[:100_000]

    assert dl.fetch(server.url("blob.bin"), dest, sha256=sha(data), progress=False) == "downloaded"
    assert [request["range"] for request in server.requests] == [None, "bytes=100000-"]
    assert dest.read_bytes() == data
    assert not part.exists()


def test_a_part_holding_the_whole_file_is_finished_without_refetching(serve, tmp_path):
    server = serve()
    data = blob(seed=2)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(data)  # a run that stopped between transfer and rename
    assert dl.fetch(server.url("blob.bin"), dest, sha256=sha(data), progress=False) == "downloaded"
    assert server.requests == [{"path": "/blob.bin", "range": f"bytes={SIZE}-"}]  # answered 416
    assert dest.read_bytes() == data


def test_server_without_range_support_restarts_from_zero(serve, tmp_path):
    server = serve(NoRangeHandler)
    data = blob(seed=3)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    part = dest.with_name("blob.bin.part")
    part.write_bytes(b"x" * 5000)  # would corrupt the file if the 200 reply were appended
    assert dl.fetch(server.url("blob.bin"), dest, progress=False) == "downloaded"
    assert server.requests == [{"path": "/blob.bin", "range": "bytes=5000-"}]
    assert dest.read_bytes() == data and not part.exists()


def test_wrong_checksum_is_rejected_and_the_existing_file_kept(serve, tmp_path):
    server = serve()
    served, good = blob(seed=4), blob(seed=5)
    (server.root / "blob.bin").write_bytes(served)
    dest = tmp_path / "data" / "blob.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"an older copy")
    with pytest.raises(ChecksumError) as error:
        dl.fetch(server.url("blob.bin"), dest, sha256=sha(good), progress=False)
    message = str(error.value)
    assert str(dest) in message and sha(good) in message and sha(served) in message
    assert f"the existing {dest} is kept" in message
    assert dest.read_bytes() == b"an older copy"  # untouched
    assert not dest.with_name("blob.bin.part").exists()  # the bad download is gone
    assert len(server.requests) == 1

    # without an older copy, a bad download leaves nothing behind either
    fresh = tmp_path / "data" / "fresh.bin"
    with pytest.raises(ChecksumError, match=re.escape(str(fresh))):
        dl.fetch(server.url("blob.bin"), fresh, sha256=sha(good), progress=False)
    assert sorted(p.name for p in fresh.parent.iterdir()) == ["blob.bin"]


def test_a_stale_file_is_replaced_once_the_new_one_is_verified(serve, tmp_path):
    server = serve()
    data = blob(seed=6)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"stale")
    assert dl.fetch(server.url("blob.bin"), dest, sha256=sha(data).upper(), progress=False) == "downloaded"
    assert dest.read_bytes() == data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def test_zip_resource_is_unpacked_into_its_folder(serve, tmp_path):
    server = serve()
    (server.root / "images.zip").write_bytes(zip_bytes({"val2014/COCO_val2014_1.jpg": b"one"}))
    data_dir = tmp_path / "data"
    images = data_dir / "coco" / "images"
    resource = one_file(server.url("images.zip"), "coco/images/val2014.zip", unpack_to="coco/images",
                        lands="coco/images/val2014")  # fmt: skip
    assert dl.download(resource, data_dir, progress=False) == [(images / "val2014", "downloaded, unpacked")]
    assert [p.name for p in (images / "val2014").iterdir()] == ["COCO_val2014_1.jpg"]
    assert (images / "val2014" / "COCO_val2014_1.jpg").read_bytes() == b"one"
    assert sorted(p.name for p in (data_dir / "coco").iterdir()) == ["images"]  # no staging folder left
    assert dl.download(resource, data_dir, progress=False) == [(images / "val2014", "already present")]

    # unpacked, then the archive deleted to save space: nothing is fetched again
    (images / "val2014.zip").unlink()
    assert dl.download(resource, data_dir, progress=False) == [(images / "val2014", "already unpacked")]
    assert len(server.requests) == 1

    # a newer archive (the old one fails its checksum) is merged in: its files replace their old
    # copies, and files a user added inside or beside the archive's folder stay as they are
    (images / "val2014.zip").write_bytes(b"the old archive")
    (images / "val2014" / "mine.txt").write_bytes(b"a user's notes")
    (images / "beside.txt").write_bytes(b"a user's file")
    newer = zip_bytes({"val2014/COCO_val2014_1.jpg": b"one, again", "val2014/COCO_val2014_2.jpg": b"two"})
    (server.root / "images.zip").write_bytes(newer)
    resource = one_file(server.url("images.zip"), "coco/images/val2014.zip", sha256=sha(newer),
                        unpack_to="coco/images", lands="coco/images/val2014")  # fmt: skip
    assert dl.download(resource, data_dir, progress=False) == [(images / "val2014", "downloaded, unpacked")]
    contents = {p.name: p.read_bytes() for p in (images / "val2014").iterdir()}
    assert contents == {"COCO_val2014_1.jpg": b"one, again", "COCO_val2014_2.jpg": b"two", "mine.txt": b"a user's notes"}
    assert (images / "beside.txt").read_bytes() == b"a user's file"
    assert (images / "val2014.zip").read_bytes() == newer
    assert sorted(p.name for p in (data_dir / "coco").iterdir()) == ["images"]


def test_archive_root_is_stripped_and_tar_gz_unpacks(serve, tmp_path):
    server = serve()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, payload in (("mscoco_imgfeat/val2014_obj36.tsv", b"tsv rows"),):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    (server.root / "feat.tar.gz").write_bytes(buffer.getvalue())
    data_dir = tmp_path / "data"
    resource = one_file(server.url("feat.tar.gz"), "lx/mscoco_imgfeat/feat.tar.gz", unpack_to="lx/mscoco_imgfeat",
                        lands="lx/mscoco_imgfeat/val2014_obj36.tsv", archive_root="mscoco_imgfeat")  # fmt: skip
    [(path, status)] = dl.download(resource, data_dir, progress=False)
    assert path == data_dir / "lx" / "mscoco_imgfeat" / "val2014_obj36.tsv" and status == "downloaded, unpacked"
    assert path.read_bytes() == b"tsv rows"
    assert sorted(p.name for p in path.parent.iterdir()) == ["feat.tar.gz", "val2014_obj36.tsv"]


@pytest.mark.parametrize("evil", ["../evil", "/abs/evil", "a/../../evil"])
def test_zip_with_a_member_outside_the_target_is_refused(serve, tmp_path, evil):
    server = serve()
    (server.root / "bad.zip").write_bytes(zip_bytes({"fine.txt": b"fine", evil: b"evil"}))
    data_dir = tmp_path / "data"
    resource = one_file(server.url("bad.zip"), "box/bad.zip", unpack_to="box/out", lands="box/out/fine.txt")
    with pytest.raises(UnsafeArchiveError) as error:
        dl.download(resource, data_dir, progress=False)
    assert repr(evil) in str(error.value) and "bad.zip" in str(error.value)
    assert not any(p.name == "evil" for p in tmp_path.rglob("*"))
    assert sorted(p.name for p in (data_dir / "box").iterdir()) == ["bad.zip", "out"]
    assert list((data_dir / "box" / "out").iterdir()) == []  # nothing unpacked, no staging folder left


def test_tar_with_a_link_outside_the_target_is_refused(tmp_path):
    archive_path = tmp_path / "links.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        link = tarfile.TarInfo("inside/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
        archive.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="outside"):
        dl.unpack(archive_path, tmp_path / "out")
    assert not (tmp_path / "out" / "inside").exists()


def tar_with(path, *members: tarfile.TarInfo, files: dict[str, bytes] | None = None):
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in (files or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
        for member in members:
            archive.addfile(member)
    return path


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def folder(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


@pytest.mark.parametrize("data_filter", [True, False], ids=["with-data-filter", "without-data-filter"])
def test_a_chain_of_links_is_refused_on_every_python(tmp_path, monkeypatch, data_filter):
    # each link alone looks inside (a/b/l2 -> .. is a/, l1 -> a/b/l2/../.. is a/ as text), but l2 is
    # a link, so l1 really points above the target, and l1/escaped would land outside it
    archive = tar_with(tmp_path / "chain.tar.gz", folder("a"), folder("a/b"), link("a/b/l2", ".."),
                       link("l1", "a/b/l2/../.."), files={"fine.txt": b"fine"})  # fmt: skip
    with tarfile.open(archive) as handle:  # plus a file written through the chain
        members = handle.getmembers()
    escaped = tarfile.TarInfo("l1/escaped.txt")
    escaped.size = 4
    with tarfile.open(archive, "w:gz") as handle:
        for member in members:
            handle.addfile(member, io.BytesIO(b"fine") if member.isfile() else None)
        handle.addfile(escaped, io.BytesIO(b"evil"))
    if not data_filter:  # the 3.10/3.11 patch releases before the filter was backported
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    target = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError) as error:
        dl.unpack(archive, target)
    assert str(error.value) == (
        f"{archive}: unsafe member 'a/b/l2' (link: a symbolic link to '..'); headlens reads nothing from the archive; "
        "unpack it yourself if you trust it"
    )
    assert isinstance(error.value, UnsafeFileError) and isinstance(error.value, DownloadError)
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))
    assert list(target.iterdir()) == [] and sorted(p.name for p in target.parent.iterdir()) == ["out"]


def test_hard_links_and_zip_symlinks_are_refused(tmp_path):
    hard = tar_with(tmp_path / "hard.tar.gz", link("copy.txt", "inside.txt", tarfile.LNKTYPE), files={"inside.txt": b"x"})
    with pytest.raises(UnsafeArchiveError, match=r"unsafe member 'copy.txt' \(link: a hard link to 'inside.txt'\)"):
        dl.unpack(hard, tmp_path / "out")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fine.txt", b"fine")
        info = zipfile.ZipInfo("images")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "../../outside")
    (tmp_path / "links.zip").write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeArchiveError) as error:
        dl.unpack(tmp_path / "links.zip", tmp_path / "zip-out")
    assert str(error.value).startswith(f"{tmp_path / 'links.zip'}: unsafe member 'images' (link);")
    assert list((tmp_path / "zip-out").iterdir()) == []


def test_a_tarfile_filter_refusal_is_reported_as_unsafe_not_damaged(tmp_path, monkeypatch):
    if not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no data filter")
    monkeypatch.setattr(archives, "check_tar_member", lambda archive, member: None)  # only the filter guards now
    archive = tar_with(tmp_path / "up.tar.gz", link("up", "../../outside"))
    with pytest.raises(UnsafeArchiveError, match=rf"^{re.escape(str(archive))}: unsafe member \(.*up"):
        dl.unpack(archive, tmp_path / "out")


def test_an_empty_reply_is_never_kept(serve, tmp_path):
    server = serve()
    (server.root / "empty.bin").write_bytes(b"")
    dest = tmp_path / "data" / "empty.bin"
    for attempt in range(2):  # and a later run fetches again rather than saying "already present"
        with pytest.raises(DownloadError) as error:
            dl.fetch(server.url("empty.bin"), dest, progress=False)
        assert str(error.value) == f"{server.url('empty.bin')}: the server sent an empty file; nothing was kept; re-run the command later"
        assert not dest.exists() and not dest.with_name("empty.bin.part").exists()
    assert len(server.requests) == 2
    dest.write_bytes(b"")  # an empty file left by an older headlens is not a download either
    (server.root / "empty.bin").write_bytes(b"content")
    assert dl.fetch(server.url("empty.bin"), dest, progress=False) == "downloaded"
    assert dest.read_bytes() == b"content"


def test_a_short_body_without_content_length_is_caught_by_the_exact_size(serve, tmp_path):
    server = serve(NoLengthHandler, cut_after=120_000)
    data = blob(seed=7)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError) as error:
        dl.fetch(server.url("blob.bin"), dest, exact_size=SIZE, progress=False)
    part = dest.with_name("blob.bin.part")
    assert str(error.value) == (
        f"{server.url('blob.bin')}: the transfer ended after 120000 of {SIZE} bytes; {part} is kept: "
        "re-run the command to resume"
    )
    assert not dest.exists() and part.read_bytes() == data[:120_000]
    assert dl.fetch(server.url("blob.bin"), dest, exact_size=SIZE, progress=False) == "downloaded"
    assert dest.read_bytes() == data and not part.exists()
    assert dl.fetch(server.url("blob.bin"), dest, exact_size=SIZE, progress=False) == "already present (size ok)"
    assert len(server.requests) == 2

    dest.write_bytes(data[:1000])  # a cut copy already there is fetched again, not "already present"
    assert dl.fetch(server.url("blob.bin"), dest, exact_size=SIZE, progress=False) == "downloaded"
    assert dest.read_bytes() == data
    longer = tmp_path / "longer.bin"  # more bytes than the exact size: deleted, never kept
    with pytest.raises(DownloadError, match=rf"^{re.escape(str(longer))}: the file from .* has {SIZE} bytes, not {SIZE - 1}"):
        dl.fetch(server.url("blob.bin"), longer, exact_size=SIZE - 1, progress=False)
    assert not longer.exists() and not longer.with_name("longer.bin.part").exists()


def test_network_failures_name_the_url_and_say_how_to_resume(serve, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/blob.bin"
    with pytest.raises(DownloadError) as error:
        dl.fetch(url, tmp_path / "blob.bin", progress=False, timeout=5)
    assert url in str(error.value) and "re-run the command to resume" in str(error.value)

    server = serve()
    with pytest.raises(DownloadError, match=re.escape(server.url("missing.bin")) + ": HTTP 404"):
        dl.fetch(server.url("missing.bin"), tmp_path / "missing.bin", progress=False)
    assert not (tmp_path / "missing.bin").exists()


def test_progress_bar_shows_only_when_asked(serve, tmp_path, capsys):
    server = serve()
    (server.root / "blob.bin").write_bytes(blob())
    dl.fetch(server.url("blob.bin"), tmp_path / "quiet.bin", progress=False)
    assert capsys.readouterr().err == ""
    dl.fetch(server.url("blob.bin"), tmp_path / "loud.bin", progress=True)
    assert "loud.bin" in capsys.readouterr().err


def run_cli(*argv: str) -> int:
    return dl.run(dl.configure_parser(argparse.ArgumentParser()).parse_args(list(argv)))


def test_list_shows_every_resource_and_whether_it_is_present(tmp_path, capsys):
    valid = dl.expected_path("lxmert-valid", tmp_path)
    assert valid == tmp_path / "lxmert" / "vqa" / "valid.json"
    valid.parent.mkdir(parents=True)
    valid.write_text("[]")
    assert run_cli("--list", "--dir", str(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * len(resources.FILES)
    for name in resources.FILES:
        [line] = [line for line in lines if line.startswith(name + " ")]
        assert ("present" if name == "lxmert-valid" else "missing") in line.split()[1]
        if name == "lxmert-answers":  # an exact size is shown as it is, an approximate one with ~
            assert line.split()[2:4] == ["46.7", "kB"]
        if name == "coco-val2014":
            assert line.split()[2:4] == ["~6.0", "GB"]
        assert resources.FILES[name].description in line
        assert f"-> {dl.expected_path(name, tmp_path)}" in lines[lines.index(line) + 1]


def test_unknown_names_are_an_error_listing_the_valid_ones(tmp_path, capsys):
    assert run_cli("lxmert-valid", "nope", "--dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown name nope" in err and "lxmert-valid" in err and "mmf-vqa2" in err and "all" in err
    assert not any(tmp_path.iterdir())  # nothing fetched before the error
    assert run_cli("--dir", str(tmp_path)) == 2
    assert "name what to fetch" in capsys.readouterr().err


def test_cli_fetches_resources_and_reports_failures(serve, tmp_path, capsys, monkeypatch):
    server = serve()
    (server.root / "blob.bin").write_bytes(b"payload")
    files = {
        "good": Resource("good", (Remote(server.url("blob.bin"), "g/blob.bin"),), "served"),
        "gone": Resource("gone", (Remote(server.url("gone.bin"), "g/gone.bin"),), "not served"),
    }
    monkeypatch.setattr(resources, "FILES", files)
    assert run_cli("good", "--dir", str(tmp_path), "--no-progress") == 0
    assert capsys.readouterr().out == f"good: {tmp_path / 'g' / 'blob.bin'}: downloaded\n"
    assert (tmp_path / "g" / "blob.bin").read_bytes() == b"payload"
    assert run_cli("all", "--dir", str(tmp_path), "--no-progress") == 1
    captured = capsys.readouterr()
    assert "good: " in captured.out and "already present" in captured.out
    assert "gone.bin: HTTP 404" in captured.err and "failed: gone" in captured.err


def test_manifest_is_consistent(tmp_path, monkeypatch):
    expected = {"lxmert-vqa", "lxmert-tokenizer", "visualbert-vqa", "bert-tokenizer", "mmf-visual-bert-vqa2",
                "lxmert-valid", "lxmert-answers", "lxmert-features", "mmf-vqa2", "coco-val2014"}  # fmt: skip
    assert set(resources.FILES) == expected
    for name, resource in resources.FILES.items():
        assert resource.name == name and resource.files and resource.description
        for remote in resource.files:
            assert remote.url.startswith(("https://", "http://images.cocodataset.org/"))
            assert not Path(remote.dest).is_absolute() and ".." not in Path(remote.dest).parts
            assert remote.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
            assert remote.exact_size is None or remote.exact_size > 0
            assert (remote.unpack_to is None) == (remote.lands is None)
    monkeypatch.setenv("HEADLENS_DATA", str(tmp_path))
    assert dl.expected_path("lxmert-features") == tmp_path / "lxmert/mscoco_imgfeat/val2014_obj36.tsv"
    mmf_checkpoint = Path("/d/models/visual_bert.finetuned.vqa2.from_coco_train.tar.gz")
    assert dl.expected_path("mmf-visual-bert-vqa2", "/d") == mmf_checkpoint
    assert dl.expected_path("lxmert-vqa", "/d").parent == Path("/d/models/unc-nlp/lxmert-vqa-uncased")
    assert dl.hint("lxmert-valid") == "headlens download lxmert-valid"
    # Given where a loader looked, the hint names the --dir that lands the file there.
    assert dl.hint("lxmert-valid", tmp_path / "lxmert/vqa/valid.json") == "headlens download lxmert-valid"
    assert dl.hint("lxmert-valid", "/d/lxmert/vqa/valid.json") == "headlens download lxmert-valid --dir /d"
    image = "/d/datasets/coco/subset_val/images/val2014/COCO_val2014_000000000042.jpg"  # inside what lands
    assert dl.hint("coco-val2014", image) == "headlens download coco-val2014 --dir /d"
    assert dl.hint("mmf-vqa2", "/d/datasets/vqa2/defaults/extras/vocabs/answers_vqa.txt").endswith(" --dir /d")
    assert dl.hint("lxmert-vqa", "/d/models/unc-nlp/lxmert-vqa-uncased") == "headlens download lxmert-vqa --dir /d"
    assert dl.hint("lxmert-valid", "/elsewhere/valid.json") == "headlens download lxmert-valid"  # not the layout
    with pytest.raises(KeyError, match="valid names"):
        dl.hint("lxmert-nope")


def test_the_command_lists_the_downloads(tmp_path):
    done = subprocess.run([sys.executable, "-m", "headlens.cli", "download", "--list", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "lxmert-features" in done.stdout and str(tmp_path / "lxmert/vqa/valid.json") in done.stdout
