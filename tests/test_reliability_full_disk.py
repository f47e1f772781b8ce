"""Issue 9, a full disk while writing features or checkpoints: a clear error naming the file,
finished outputs intact, nothing finished-looking left behind, and a re-run (or resume) that
completes as if nothing had happened.

The disk is filled by a write error (``OSError(ENOSPC)`` from the writer's file, as from a full
disk); where the test runs as root and may mount, also by a real 256 KiB tmpfs.
"""

import errno
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import make_librispeech_part, signal, write_flac
from lhotse import LilcomChunkyWriter, load_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_training  # noqa: E402

from w2vbert import checkpoint as ckpt_io  # noqa: E402
from w2vbert.prep import compute_features as cf  # noqa: E402
from w2vbert.prep.compute_features import compute_fbank_part, training_cut_filter  # noqa: E402
from w2vbert.prep.manifests import prepare_manifests  # noqa: E402
from w2vbert.util import atomic  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler")

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _enospc(*_args, **_kwargs):
    raise ENOSPC


def _fbank(root: Path, part: str, force: bool = False) -> Path:
    filt = None if part.startswith("dev") else training_cut_filter()
    return compute_fbank_part(root / "m", root / "f", "toy", part, length_filter=filt, force=force)


def _features(cuts_path: Path) -> dict[str, np.ndarray]:
    return {c.id: c.load_features() for c in load_manifest(cuts_path)}


@pytest.fixture()
def two_parts(tmp_path):
    """Manifests of dev-x and train-x (3 cuts of 1 s each); dev-x's features are finished."""
    for part in ("dev-x", "train-x"):
        make_librispeech_part(tmp_path / "c", part)
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy")
    dev = _fbank(tmp_path, "dev-x")
    return tmp_path, dev, _features(dev), dev.stat().st_mtime_ns


def _assert_part_absent(out: Path, part: str) -> None:
    assert not (out / f"toy_cuts_{part}.jsonl.gz").exists()
    assert not (out / f"toy_feats_{part}").exists()  # space freed
    assert not list(out.glob(".partial*"))


def test_full_disk_while_storing_features_names_the_part_directory_and_keeps_finished_parts(
    two_parts, monkeypatch
):
    root, dev, dev_feats, dev_stamp = two_parts
    real_write, calls = LilcomChunkyWriter.write, []

    def write_then_fill(self, key, value):
        calls.append(key)
        if len(calls) == 2:
            self.file.write(b"half a feature matrix")
            raise ENOSPC
        return real_write(self, key, value)

    monkeypatch.setattr(LilcomChunkyWriter, "write", write_then_fill)
    with pytest.raises(OSError, match=r"Part train-x: storing features failed \(.*\): No space") as e:
        _fbank(root, "train-x")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(root / "f/toy_feats_train-x")
    monkeypatch.undo()
    _assert_part_absent(root / "f", "train-x")
    assert dev.stat().st_mtime_ns == dev_stamp
    assert all(np.array_equal(a, _features(dev)[k]) for k, a in dev_feats.items())
    assert len(load_manifest(_fbank(root, "train-x"))) == 3  # the re-run completes


def test_full_disk_while_writing_the_cuts_file_names_it_and_leaves_no_partial_file(
    two_parts, monkeypatch
):
    root, _dev, _feats, _stamp = two_parts
    real = cf.CutSet.to_file

    def fill(self, path):
        Path(path).write_bytes(b"\x1f\x8b truncated")
        raise ENOSPC

    monkeypatch.setattr(cf.CutSet, "to_file", fill)
    with pytest.raises(OSError, match=r"Writing .* failed \(.*\): No space left") as e:
        _fbank(root, "train-x")
    assert e.value.filename == str(root / "f/toy_cuts_train-x.jsonl.gz")
    monkeypatch.setattr(cf.CutSet, "to_file", real)
    assert not (root / "f/toy_cuts_train-x.jsonl.gz").exists()
    assert not list((root / "f").glob(".partial*"))
    assert len(load_manifest(_fbank(root, "train-x"))) == 3


def test_a_forced_rerun_that_fails_leaves_no_cuts_file_pointing_at_deleted_features(
    two_parts, monkeypatch
):
    root, dev, dev_feats, _stamp = two_parts
    monkeypatch.setattr(LilcomChunkyWriter, "write", _enospc)
    with pytest.raises(OSError, match="storing features failed"):
        _fbank(root, "dev-x", force=True)
    monkeypatch.undo()
    # Before the fix the old cuts file stayed, so the next run skipped the part ("exists")
    # and training later failed reading features that no longer existed.
    _assert_part_absent(root / "f", "dev-x")
    again = _features(_fbank(root, "dev-x"))
    assert again.keys() == dev_feats.keys()
    assert all(np.array_equal(again[k], a) for k, a in dev_feats.items())


def _full_file(limit: int):
    """``open`` for the atomic writer (w2vbert.util.atomic) whose files take ``limit`` bytes, then raise ENOSPC
    (what a full disk does; torch.save then fails with a RuntimeError naming no file)."""

    class FullFile:
        def __init__(self, path, mode):
            self.f, self.n = open(path, mode), 0

        def write(self, data):
            self.n += len(data)
            if self.n > limit:
                raise ENOSPC
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    return FullFile


def test_full_disk_while_saving_a_checkpoint_names_it_and_keeps_the_previous_one(
    tmp_path, monkeypatch
):
    path = tmp_path / "checkpoint-8.pt"
    ckpt_io.atomic_torch_save({"w": torch.zeros(4)}, path)
    monkeypatch.setattr(atomic, "open", _full_file(1000), raising=False)
    with pytest.raises(OSError, match=rf"Writing {path} failed \(.* MiB free there"):
        ckpt_io.atomic_torch_save({"w": torch.ones(10000)}, path)
    monkeypatch.undo()
    assert torch.equal(ckpt_io.load_checkpoint(path)["w"], torch.zeros(4))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-8.pt"]


def test_training_stopped_by_a_full_disk_resumes_to_the_uninterrupted_result(
    tmp_path, monkeypatch, caplog
):
    def final(trainer):
        return trainer.model.state_dict(), trainer.model_avg, trainer.state.batch_idx_train

    config = dict(num_epochs=1, save_every_n=4, keep_last_k=0)
    ref = toy_training.build_trainer(toy_training.toy_config(tmp_path / "ref", **config))
    ref.train()
    exp = tmp_path / "full"
    real_save = torch.save

    def save(obj, f):
        if Path(f.name).name.endswith(".checkpoint-8.pt"):  # its temp file
            raise ENOSPC
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match=rf"Writing {exp / 'checkpoint-8.pt'} failed .*No space"):
        toy_training.build_trainer(toy_training.toy_config(exp, **config)).train()
    monkeypatch.undo()
    assert sorted(p.name for p in exp.glob("*.pt")) == ["checkpoint-4.pt"]
    resumed = toy_training.build_trainer(toy_training.toy_config(exp, **config))
    with caplog.at_level(logging.INFO):
        assert resumed.maybe_resume() == exp / "checkpoint-4.pt"
    resumed.train()
    (m1, a1, n1), (m2, a2, n2) = final(ref), final(resumed)
    assert n1 == n2 > 8
    assert all(torch.equal(m1[k], m2[k]) for k in m1) and all(torch.equal(a1[k], a2[k]) for k in a1)


# ----------------------------------------------------------------- a real full file system


@pytest.fixture()
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs at tmp_path/fs (skips unless this process may mount)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_real_full_tmpfs_features_and_checkpoint_errors_name_their_files(tmp_path, tiny_tmpfs):
    # Features: 3 x 20 s of audio take ~500 KB of lilcom, more than the file system holds.
    paths = make_librispeech_part(tmp_path / "c", "dev-x")
    for p in paths.values():
        write_flac(p, signal(20.0))
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy")
    out = tiny_tmpfs / "fbank"
    with pytest.raises(OSError, match=r"storing features failed \(.*\): No space left on device") as e:
        compute_fbank_part(tmp_path / "m", out, "toy", "dev-x", length_filter=None)
    assert e.value.filename == str(out / "toy_feats_dev-x")
    assert not list(out.glob("*.jsonl.gz")) and not (out / "toy_feats_dev-x").exists()
    # Checkpoint: a small one fits, a 4 MB one does not; torch.save itself raises a
    # RuntimeError ("unexpected pos ...") that names no file.
    ckpt = tiny_tmpfs / "checkpoint-4.pt"
    ckpt_io.atomic_torch_save({"w": torch.zeros(4)}, ckpt)
    with pytest.raises(OSError, match=rf"Writing {ckpt} failed \(0\.\d MiB free there"):
        ckpt_io.atomic_torch_save({"w": torch.ones(1_000_000)}, ckpt)
    assert torch.equal(ckpt_io.load_checkpoint(ckpt)["w"], torch.zeros(4))
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["checkpoint-4.pt", "fbank"]
