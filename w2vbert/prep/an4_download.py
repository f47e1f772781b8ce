"""Stage 0 of ``--corpus an4``: CMU's ``an4_raw.bigendian`` archive unpacked (or an existing tree
linked) as ``<target_dir>/an4``, checked to hold AN4's transcript and file lists."""

from __future__ import annotations

import logging
import os
import tarfile
from pathlib import Path

from w2vbert.prep.an4_layout import SETS, URL
from w2vbert.prep.corpus_problems import CorpusError
from w2vbert.util.atomic import scratch_directory

logger = logging.getLogger(__name__)

ARCHIVE_NAME = URL.rsplit("/", 1)[-1]  # an4_raw.bigendian.tar.gz


def check_an4_tree(an4_dir: Path) -> None:
    """Raises CorpusError naming what ``an4_dir`` lacks of an AN4 tree (``etc/`` lists, ``wav/``)."""
    an4_dir = Path(an4_dir)
    needed = [an4_dir / "etc" / f"{stem}.{kind}" for stem in SETS.values()
              for kind in ("transcription", "fileids")] + [an4_dir / "wav"]  # fmt: skip
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise CorpusError(f"{an4_dir} is not an AN4 tree: missing {', '.join(missing)}")


def unpack_an4(archive: Path, target_dir: Path) -> Path:
    """Unpacks ``archive`` (whose top directory is ``an4/``) into ``target_dir/an4`` whole or not
    at all (an existing one is kept); returns that directory."""
    archive, out = Path(archive), Path(target_dir) / "an4"
    if out.is_dir():
        check_an4_tree(out)
        logger.info("%s exists, not unpacking %s again", out, archive)
        return out
    if not archive.is_file():
        raise FileNotFoundError(f"AN4 archive {archive} does not exist")
    from lhotse.utils import safe_extract  # refuses members outside the target

    with scratch_directory(out) as tmp:
        with tarfile.open(archive) as tar:
            safe_extract(tar, path=tmp)
        check_an4_tree(tmp / "an4")
        os.replace(tmp / "an4", out)
    logger.info("Unpacked %s -> %s", archive, out)
    return out


def link_an4(existing: Path, target_dir: Path) -> Path:
    """Makes ``target_dir/an4`` a symbolic link to the AN4 tree ``existing``; returns it."""
    existing, link = Path(existing).resolve(), Path(target_dir) / "an4"
    check_an4_tree(existing)
    if link.is_symlink() and link.resolve() == existing:
        return link
    if link.exists() or link.is_symlink():
        raise FileExistsError(f"{link} exists; remove it to link {existing} there instead")
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(existing, link)
    logger.info("Linked %s -> %s", link, existing)
    return link


def download_an4(target_dir: Path, url: str = URL) -> Path:
    """Downloads (resumably) and unpacks CMU's archive into ``target_dir/an4``; returns it."""
    from lhotse.utils import resumable_download

    target_dir = Path(target_dir)
    if (target_dir / "an4").is_dir():
        return unpack_an4(target_dir / ARCHIVE_NAME, target_dir)  # checks and keeps it
    target_dir.mkdir(parents=True, exist_ok=True)
    archive = target_dir / ARCHIVE_NAME
    resumable_download(url, filename=archive)
    return unpack_an4(archive, target_dir)  # the archive is kept: unpacking again needs no network
