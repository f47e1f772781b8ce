"""Issue 25: no stale model passes as a new one. A checkpoint records what it was trained on, by
content (the BPE model's pieces, the --init-from weights, the training cuts' ids and transcripts);
resume and decoding compare them. Also: an exp dir whose checkpoints all fail is an error, a
refused run writes nothing, and the smaller cases of the issue's point 6.

The CLI tests share one tiny corpus and one pre-training run (module fixture); each fine-tuning
run is one epoch of six cuts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_corpus  # noqa: E402
import toy_training  # noqa: E402

from w2vbert import checkpoint as ckpt_io  # noqa: E402
from w2vbert import decode, finetune, pretrain  # noqa: E402
from w2vbert.data.tokenizer import BpeTokenizer  # noqa: E402
from w2vbert.util.lock import DirectoryInUseError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

COMMON = [*tiny_corpus.TRAIN_FLAGS, "--save-every-n", "0"]


def _other_bpe(root: Path, vocab_size: int = 20) -> Path:
    """A BPE model of the same size as tiny_corpus.make_bpe's, trained on other text."""
    import sentencepiece as spm

    root.mkdir(parents=True, exist_ok=True)
    text = root / "text.txt"
    words = " ".join(tiny_corpus.TEXTS).split()
    text.write_text("\n".join(" ".join(words[i:] + words[:i]) for i in range(len(words))) * 5)
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(root / "bpe"), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, user_defined_symbols=["<blk>", "<sos/eos>"],
        unk_id=2, bos_id=-1, eos_id=-1, minloglevel=2,
    )  # fmt: skip
    return root / "bpe.model"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("stale")
    train = tiny_corpus.make_cuts(root, "train", 6)
    dev = tiny_corpus.make_cuts(root, "dev", 2, seed=1)
    bpe = tiny_corpus.make_bpe(root)
    other = _other_bpe(root / "other")
    pre = root / "pretrain"
    pretrain.main(["--train-cuts", str(train), "--valid-cuts", str(dev), "--model-preset",
                   "tiny", "--exp-dir", str(pre), "--num-epochs", "1", "--no-tensorboard",
                   *COMMON])  # fmt: skip
    return {"root": root, "train": train, "dev": dev, "bpe": bpe, "other_bpe": other,
            "pre_dir": pre, "pre": pre / "epoch-1.pt"}  # fmt: skip


def _ft_argv(c: dict, exp: Path, init: Path, bpe: Path, *extra: str) -> list[str]:
    return ["--init-from", str(init), "--bpe-model", str(bpe), "--train-cuts", str(c["train"]),
            "--valid-cuts", str(c["dev"]), "--exp-dir", str(exp), "--decoder-dim", "16",
            "--joiner-dim", "16", "--no-tensorboard", *COMMON, *extra]  # fmt: skip


def _tree(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` and its md5 (what a refused run must leave as it was)."""
    return {
        str(p.relative_to(directory)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def finetuned(corpus, tmp_path):
    """A finished 1-epoch fine-tuning run whose BPE model and init checkpoint are this test's own
    files (to be re-made at the same paths)."""
    bpe, init = tmp_path / "lang" / "bpe.model", tmp_path / "init.pt"
    bpe.parent.mkdir()
    shutil.copy(corpus["bpe"], bpe)
    shutil.copy(corpus["pre"], init)
    exp = tmp_path / "ft"
    argv = _ft_argv(corpus, exp, init, bpe, "--num-epochs", "1")
    finetune.main(argv)
    return {"exp": exp, "bpe": bpe, "init": init, "argv": argv}


def test_the_tokenizer_digest_follows_the_pieces_not_the_path_or_the_size(corpus, tmp_path):
    a, b = BpeTokenizer(corpus["bpe"]), BpeTokenizer(corpus["other_bpe"])
    assert a.vocab_size == b.vocab_size == 20
    pieces = lambda t: [t.sp.id_to_piece(i) for i in range(t.vocab_size)]  # noqa: E731
    assert pieces(a) != pieces(b) and a.digest() != b.digest()
    shutil.copy(corpus["bpe"], tmp_path / "elsewhere.model")
    assert BpeTokenizer(tmp_path / "elsewhere.model").digest() == a.digest()


def test_case_1_a_retrained_bpe_model_of_the_same_size_refuses_the_resume_or_sets_the_run_aside(
    corpus, finetuned
):
    exp, bpe = finetuned["exp"], finetuned["bpe"]
    shutil.copy(corpus["other_bpe"], bpe)  # stage 3 re-run: the same path, size, other pieces
    before = _tree(exp)
    changed = (
        "it was trained on other inputs: the BPE model's pieces changed: "
        rf"{bpe} \(sha256 [0-9a-f]{{12}}\) when the checkpoint was trained, {bpe} "
        r"\(sha256 [0-9a-f]{12}\) now"
    )
    with pytest.raises(ValueError, match=changed):
        finetune.main(finetuned["argv"][:-1] + ["2"])  # --num-epochs 2
    assert _tree(exp) == before  # nothing written: no log, no checkpoint, no config.json
    # run.sh's way: the stale run is moved aside (never deleted), training starts over
    finetune.main(finetuned["argv"] + ["--stale-inputs", "set-aside"])
    (stale,) = exp.glob("stale-*")
    assert _tree(stale)["epoch-1.pt"] == before["epoch-1.pt"]
    assert "the BPE model's pieces changed" in (stale / "README").read_text()
    new = torch.load(exp / "epoch-1.pt", weights_only=False)["params"]["inputs"]
    assert new["tokenizer"]["sha256"] == BpeTokenizer(corpus["other_bpe"]).digest()


def test_case_1_decoding_with_a_bpe_model_of_the_same_size_but_other_pieces_is_refused(
    corpus, finetuned
):
    exp = finetuned["exp"]
    argv = ["--exp-dir", str(exp), "--epoch", "1", "--no-use-averaged-model", "--device", "cpu",
            "--cuts", f"dev={corpus['dev']}"]  # fmt: skip
    decode.main(argv)
    results = _tree(exp / "greedy_search")
    with pytest.raises(SystemExit):
        decode.main(argv + ["--bpe-model", str(corpus["other_bpe"])])
    log = sorted((exp / "greedy_search" / "log").glob("log-decode-*"))[-1].read_text()
    other = corpus["other_bpe"]
    assert f"BPE model {other} has other pieces than the model was trained with " in log
    assert {k: v for k, v in _tree(exp / "greedy_search").items() if "log" not in k} == {
        k: v for k, v in results.items() if "log" not in k
    }  # recogs, errs, results, wer-summary: untouched


def test_case_2_an_init_checkpoint_remade_at_the_same_path_refuses_the_resume(corpus, finetuned):
    exp, init = finetuned["exp"], finetuned["init"]
    ckpt = torch.load(init, weights_only=False)
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, init)  # stage 4 re-done with another lr: other weights, the same path
    load_init = sys.modules["w2vbert.training.init_checkpoint"].load_init_checkpoint
    load_init.cache_clear()
    before = _tree(exp)
    changed = (
        r"the initial weights \(--init-from\) changed: "
        rf"{init} \(model\) \(sha256 [0-9a-f]{{12}}\) when the checkpoint was trained"
    )
    with pytest.raises(ValueError, match=changed):
        finetune.main(finetuned["argv"])
    assert _tree(exp) == before


def test_case_2_training_cuts_remade_with_another_transcript_refuse_the_resume(corpus, tmp_path):
    train = tmp_path / "cuts_train.jsonl.gz"
    shutil.copy(corpus["train"], train)
    exp = tmp_path / "ft"
    c = {**corpus, "train": train}
    argv = _ft_argv(c, exp, corpus["pre"], corpus["bpe"], "--num-epochs", "1", "--max-steps", "1")
    finetune.main(argv)
    lines = gzip.open(train, "rt").read().splitlines()
    cut = json.loads(lines[0])
    cut["supervisions"][0]["text"] = "GOOD WORLD"  # one edited transcript
    lines[0] = json.dumps(cut)
    with gzip.open(train, "wt") as f:
        f.write("\n".join(lines) + "\n")
    changed = rf"the training cuts changed: {train} \(sha256 [0-9a-f]{{12}}\) when the checkpoint"
    with pytest.raises(ValueError, match=changed):
        finetune.main(argv)


def test_case_3_an_exp_dir_whose_checkpoints_all_fail_is_an_error_naming_them(tmp_path):
    toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=2)).train()
    files = ckpt_io.find_checkpoints(tmp_path) + ckpt_io.find_epoch_checkpoints(tmp_path)
    for path in files:  # a format change: the key that resume reads is renamed
        ckpt = ckpt_io.load_checkpoint(path)
        ckpt["state"] = ckpt.pop("train_state")
        ckpt_io.atomic_torch_save(ckpt, path)
    before = _tree(tmp_path)
    trainer = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=2))
    with pytest.raises(ValueError) as e:
        trainer.maybe_resume()
    message = str(e.value)
    assert message.startswith(
        f"{tmp_path} has {len(files)} checkpoint(s), but none can be resumed from: "
    )
    assert "epoch-2.pt (KeyError: 'train_state')" in message and "epoch-1.pt (KeyError" in message
    assert "use a new --exp-dir" in message
    trainer._lock.release()
    assert _tree(tmp_path) == before


def test_case_6_a_resume_asking_for_fewer_epochs_than_trained_says_so(tmp_path, caplog):
    toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=2)).train()
    again = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=1))
    with caplog.at_level(logging.WARNING):
        again.maybe_resume()
    assert again.finished()
    assert (
        "epoch-2.pt has trained 2 epoch(s), more than --num-epochs 1: nothing is trained, the "
        "exp dir's model stays that one and config.json is left as it is"
    ) in caplog.text
    again.train()


def _pretrain_argv(c: dict, exp: Path, *extra: str) -> list[str]:
    return ["--train-cuts", str(c["train"]), "--valid-cuts", str(c["dev"]), "--model-preset",
            "tiny", "--exp-dir", str(exp), "--num-epochs", "1", *COMMON, *extra]  # fmt: skip


def test_case_6_a_refused_run_writes_nothing_and_an_identical_rerun_rewrites_nothing(
    corpus, tmp_path
):
    exp = tmp_path / "pretrain"
    shutil.copytree(corpus["pre_dir"], exp)  # a finished run (the same cuts paths)
    argv = _pretrain_argv(corpus, exp, "--no-tensorboard")
    before = _tree(exp)
    pretrain.main(argv)  # the same command again: nothing to train
    after = _tree(exp)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed and all(k.startswith("log/log-train-") for k in changed)  # the log says so
    assert after["config.json"] == before["config.json"]  # time stamp included
    assert not list(exp.glob("tensorboard/*"))
    before = _tree(exp)
    with pytest.raises(ValueError, match=r"base_lr \(checkpoint 0.002, now 0.005\)"):
        pretrain.main(_pretrain_argv(corpus, exp, "--base-lr", "0.005"))  # tensorboard on
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "what": "training",
                "command": "python -m w2vbert.pretrain ...",
                "since": "2026-12-06T10:00:00"}  # fmt: skip
        (exp / ".lock").write_text(json.dumps(lock))
        before[".lock"] = hashlib.md5((exp / ".lock").read_bytes()).hexdigest()
        with pytest.raises(DirectoryInUseError, match=f"in use: training by pid {holder.pid}"):
            pretrain.main(_pretrain_argv(corpus, exp))
    finally:
        holder.kill()
    assert _tree(exp) == before  # no log-train-*, no TensorBoard event file, no config.json


def test_case_6_decoding_a_truncated_cuts_file_names_it(corpus, finetuned, tmp_path):
    cut = tmp_path / "cuts_test.jsonl.gz"
    data = corpus["dev"].read_bytes()
    cut.write_bytes(data[:-20])  # its last cuts (read lazily, after the first ones) cut off
    exp = finetuned["exp"]
    with pytest.raises(SystemExit):
        decode.main(["--exp-dir", str(exp), "--epoch", "1", "--no-use-averaged-model",
                     "--device", "cpu", "--cuts", f"test={cut}"])  # fmt: skip
    log = sorted((exp / "greedy_search" / "log").glob("log-decode-*"))[-1].read_text()
    assert f"--cuts test={cut}: cannot read the cuts (EOFError: " in log
    assert "truncated or corrupt" in log
    assert not list((exp / "greedy_search").glob("*-test-*"))


def test_case_6_the_lower_case_warning_says_what_the_bpe_model_does_with_them(tmp_path, caplog):
    from data_fixtures import make_librispeech_part

    from w2vbert.prep.bpe import train_bpe
    from w2vbert.prep.manifests import check_librispeech_part

    make_librispeech_part(tmp_path / "c", "dev-x", texts={"11-100-0000": "hello world",
                                                         "11-100-0001": "FINE TEXT"})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        check_librispeech_part(tmp_path / "c" / "dev-x")
    assert "<unk>" not in caplog.text
    said = "They are kept as written: stage 3's BPE model learns pieces for those characters too"
    assert said in caplog.text
    # what does happen: the BPE model trained on such text has pieces for them, no <unk>
    train_bpe(["hello world", "FINE TEXT"] * 20, tmp_path / "lang", 18)
    tok = BpeTokenizer(tmp_path / "lang" / "bpe.model")
    assert tok.sp.unk_id() not in tok("hello world")
    assert tok.sp.decode(tok("hello world")) == "hello world"


def test_case_6_librispeech_layout_audio_paths_are_absolute(tmp_path, monkeypatch):
    from data_fixtures import make_librispeech_part
    from lhotse import load_manifest

    from w2vbert.prep.manifests import prepare_manifests

    make_librispeech_part(tmp_path / "c", "dev-x")
    monkeypatch.chdir(tmp_path)
    prepare_manifests(Path("c"), Path("m"), "toy", ["dev-x"])  # relative, as run.sh gives them
    recordings = load_manifest(tmp_path / "m" / "toy_recordings_dev-x.jsonl.gz")
    for rec in recordings:
        assert Path(rec.sources[0].source).is_absolute(), rec.sources[0].source
    monkeypatch.chdir(tmp_path / "c")  # another recipe's directory: the audio is still found
    assert next(iter(recordings)).load_audio().shape[1] > 0
