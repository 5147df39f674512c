"""Fetching corpora that have a public archive: resumable download, checksum, atomic extraction.

``ser download ravdess --root PATH`` (or ``--data.download true``) downloads the archive into
``<cache root>/downloads`` as ``<name>.part`` (an interrupted download resumes with an HTTP Range
request, or restarts if the server ignores it), checks its size and MD5, extracts it into a
temporary folder beside ``root`` and renames that to ``root``: a corpus folder is never half there.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ser.errors import SERError
from ser.io import cache_root, file_lock

log = logging.getLogger("ser")
CHUNK = 1 << 20


class DownloadError(SERError):
    """A download that failed or does not match its checksum."""


@dataclass(frozen=True)
class Archive:
    """A corpus's public archive.

    Args:
        url: where to fetch it.
        filename: name of the downloaded file.
        marker: a path inside the extracted corpus that shows it is there (e.g. ``Actor_01``).
        size: expected size in bytes (``None``: not documented).
        md5: expected MD5 hex digest (``None``: not documented).
    """

    url: str
    filename: str
    marker: str
    size: int | None = None
    md5: str | None = None


ARCHIVES = {
    # Zenodo record 1188976 (CC BY-NC-SA 4.0). Size and MD5 of the file as published for the
    # record; several independent projects report the same two values after downloading it. They
    # were not re-read from Zenodo's API here (no network), and a mismatch names both values.
    "ravdess": Archive(
        url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
        filename="Audio_Speech_Actors_01-24.zip",
        marker="Actor_01",
        size=208468073,
        md5="bc696df654c87fed845eb13823edef8a",
    ),
    # The authors' site; no checksum is published, the extracted files are checked by `verify`.
    "emodb": Archive(
        url="http://emodb.bilderbar.info/download/download.zip",
        filename="emodb-download.zip",
        marker="wav",
    ),
}

#: Corpora without a single public archive: where to get them.
ELSEWHERE = {
    "crema_d": "git clone https://github.com/CheyneyComputerScience/CREMA-D (needs git lfs; "
    "the audio is AudioWAV/)",
    "tess": "https://doi.org/10.5683/SP2/E8H2MF (download the dataset as a zip from the Dataverse page)",
    "savee": "http://kahlan.eps.surrey.ac.uk/savee/ (registration required)",
    "aesdd": "https://m3c.web.auth.gr/research/aesdd-speech-emotion-recognition/ (on request)",
}


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: Path, size: int | None = None, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if a previous attempt was cut off.

    Raises:
        DownloadError: the server fails, or the file's size or MD5 differ from those given
            (the partial file is then deleted, so the next attempt starts clean).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is None or have < size:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                resumed = have > 0 and response.status == 206
                if have and not resumed:
                    log.info("%s ignored the resume request; downloading from the start", url)
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else size
                with open(part, "ab" if resumed else "wb") as f, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, desc=dest.name,
                    mininterval=1,
                ) as bar:  # fmt: skip
                    received = 0
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                        received += len(chunk)
                if length is not None and received < int(length):
                    raise OSError(f"connection closed after {received} of {length} bytes")
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise DownloadError(
                f"downloading {url} failed ({err}); run the command again to resume, or download "
                f"it yourself to {dest}"
            ) from None
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(
            f"{url}: got {got} bytes, expected {size}; the partial file was removed"
        )
    if md5 is not None and (digest := md5sum(part)) != md5:
        part.unlink()
        raise DownloadError(
            f"{url}: MD5 {digest} differs from the expected {md5}; the file was removed"
        )
    os.replace(part, dest)
    return dest


def extract(archive: Path, root: Path) -> Path:
    """Unpack a zip into ``root`` via a temporary folder beside it, renamed when complete."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise DownloadError(
                        f"{archive}: member {member!r} would extract outside {root}"
                    )
            zf.extractall(tmp)
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # an empty folder the user made for it
        os.replace(tmp, root)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{archive} is not a valid zip file ({err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def download_corpus(name: str, root: str | Path, archive: Archive | None = None) -> Path:
    """Download and extract corpus ``name`` into ``root`` unless it is already there.

    Args:
        name: a key of :data:`ARCHIVES` (``ravdess``, ``emodb``).
        root: the corpus folder to create.
        archive: fetch this archive instead of the registered one (a mirror, or a test server).
    """
    root = Path(root).expanduser()
    if archive is None:
        if name not in ARCHIVES:
            where = ELSEWHERE.get(name)
            raise SERError(
                f"{name} has no public archive ser can fetch"
                + (
                    f"; get it from {where} and pass its folder as --data.root"
                    if where
                    else f"; known: {', '.join(ARCHIVES)}"
                )  # fmt: skip
            )
        archive = ARCHIVES[name]
    if (root / archive.marker).exists():
        log.info("%s is already in %s", name, root)
        return root
    if root.is_dir() and any(root.iterdir()):
        raise SERError(f"{root} exists and is not empty but holds no {archive.marker}; "
                       "give an empty or new folder as the root")  # fmt: skip
    downloads = cache_root() / "downloads"
    with file_lock(downloads / f"{archive.filename}.lock"):
        if (root / archive.marker).exists():  # another process finished it while we waited
            return root
        path = fetch(archive.url, downloads / archive.filename, archive.size, archive.md5)
        extract(path, root)
        path.unlink()
    if not (root / archive.marker).exists():
        raise DownloadError(f"{archive.url} did not contain {archive.marker}; check {root}")
    log.info("%s is ready in %s", name, root)
    return root


def main(argv: list[str] | None = None) -> None:
    """``ser download <corpus> --root PATH``."""
    parser = argparse.ArgumentParser(
        prog="ser download",
        description="Download and unpack a corpus with a public archive (resumable, checked).",
    )
    parser.add_argument("corpus", choices=sorted({*ARCHIVES, *ELSEWHERE}))
    parser.add_argument("--root", required=True, help="folder to unpack the corpus into")
    args = parser.parse_args(argv)
    root = download_corpus(args.corpus, args.root)  # ser.__main__ reports a SERError in one line
    print(f"{args.corpus} is in {root}; use --data.root {root}")
