"""Downloads against an HTTP server on 127.0.0.1: happy path, bad checksum, resume, restart."""

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from ser.__main__ import main as ser_main
from ser.data import RAVDESS
from ser.data.download import ARCHIVES, Archive, DownloadError, download_corpus
from ser.data.splits import SplitSpec
from ser.io import cache_root

from .helpers import write_ravdess


def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for actor in (1, 2):
            zf.writestr(
                f"Actor_{actor:02d}/03-01-01-01-01-01-{actor:02d}.wav", b"RIFF" + bytes(3000)
            )
    return buffer.getvalue()


class Server:
    """Serves one file; can cut the first response short, and can ignore Range requests."""

    def __init__(self, payload: bytes, cut_first_at: int | None = None, honour_range: bool = True):
        self.payload, self.cut, self.honour_range = payload, cut_first_at, honour_range
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng and server.honour_range else 0
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut is not None:  # the connection drops part-way
                    body, server.cut = body[: server.cut], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/corpus.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def archive(self, md5: str | None = None) -> Archive:
        md5 = md5 or hashlib.md5(self.payload).hexdigest()
        return Archive(self.url, "toy.zip", "Actor_01", size=len(self.payload), md5=md5)


@pytest.fixture
def payload() -> bytes:
    return tiny_zip()


def leftovers(tmp_path: Path) -> list[Path]:
    """Half-extracted folders, partial or finished downloads (lock files stay, by design)."""
    downloads = cache_root() / "downloads"
    return [*tmp_path.glob(".*partial*"), *downloads.glob("*.zip"), *downloads.glob("*.part")]


def test_happy_path_extracts_atomically(tmp_path: Path, payload: bytes):
    server = Server(payload)
    root = download_corpus("toy", tmp_path / "ravdess", server.archive())
    assert sorted(p.name for p in root.iterdir()) == ["Actor_01", "Actor_02"]
    assert (root / "Actor_02" / "03-01-01-01-01-01-02.wav").stat().st_size == 3004
    assert leftovers(tmp_path) == []
    assert download_corpus("toy", root, server.archive()) == root and len(server.ranges) == 1


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, payload: bytes):
    server = Server(payload)
    with pytest.raises(DownloadError, match="MD5 .* differs"):
        download_corpus("toy", tmp_path / "ravdess", server.archive(md5="0" * 32))
    assert not (tmp_path / "ravdess").exists() and leftovers(tmp_path) == []


def test_interrupted_download_resumes_with_range(tmp_path: Path, payload: bytes):
    server = Server(payload, cut_first_at=1000)
    with pytest.raises(DownloadError, match="run the command again to resume"):
        download_corpus("toy", tmp_path / "ravdess", server.archive())
    assert not (tmp_path / "ravdess").exists()
    download_corpus("toy", tmp_path / "ravdess", server.archive())
    assert server.ranges == [None, "bytes=1000-"]
    assert (tmp_path / "ravdess" / "Actor_01").is_dir() and leftovers(tmp_path) == []


def test_server_without_range_support_restarts_cleanly(tmp_path: Path, payload: bytes):
    server = Server(payload, cut_first_at=1000, honour_range=False)
    with pytest.raises(DownloadError):
        download_corpus("toy", tmp_path / "ravdess", server.archive())
    download_corpus("toy", tmp_path / "ravdess", server.archive())
    assert (tmp_path / "ravdess" / "Actor_02").is_dir()


def test_corpus_without_archive_says_where_to_get_it(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ser_main(["download", "tess", "--root", str(tmp_path / "tess")])
    assert exit_info.value.code == 2 and "doi.org/10.5683/SP2/E8H2MF" in capsys.readouterr().err


def test_data_download_flag_fetches_then_trains_on_it(tmp_path: Path, monkeypatch):
    source = write_ravdess(tmp_path / "src", actors=(1, 2, 3), clips_per_emotion=1, seconds=0.2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for f in sorted(source.rglob("*.wav")):
            zf.write(f, f.relative_to(source))
    server = Server(buffer.getvalue())
    monkeypatch.setitem(ARCHIVES, "ravdess", server.archive())
    # one clip per class and speaker: too few for a test fold's figure, enough for the download
    split = SplitSpec(n_folds=3, min_clips_per_class=0)
    dm = RAVDESS(root=str(tmp_path / "ravdess"), download=True, split=split)
    dm.setup("fit")
    assert sum(len(ds) for ds in dm.datasets.values()) == 12


def test_data_download_flag_on_a_corpus_without_archive(tmp_path: Path):
    from ser.data import TESS
    from ser.errors import SERError

    with pytest.raises(SERError, match="TESS has no public archive.*doi.org"):
        TESS(root=str(tmp_path / "tess"), download=True).setup("fit")
