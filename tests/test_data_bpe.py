"""Stage 3 (BPE): special ids, tokens.txt, transcripts from manifests, bad vocab size."""

import pytest
import sentencepiece as spm
from lhotse import CutSet, SupervisionSegment
from lhotse.testing.dummies import dummy_cut

from w2vbert.prep.bpe import train_bpe, transcripts_from_manifests

TEXTS = [
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "AND GOD SAID LET THERE BE LIGHT AND THERE WAS LIGHT",
    "A VISIT TO A STRANGE PLACE WILL BRING FRESH WORK",
    "DON'T PANIC SAID THE GUIDE TO THE GALAXY",
] * 5


def test_special_symbols_have_ids_0_1_2_and_tokens_txt_lists_every_piece(tmp_path):
    model = train_bpe(TEXTS, tmp_path / "lang", vocab_size=40)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<blk>", "<sos/eos>", "<unk>"]
    assert sp.unk_id() == 2 and sp.bos_id() == -1 and sp.eos_id() == -1
    lines = (tmp_path / "lang" / "tokens.txt").read_text().splitlines()
    assert lines == [f"{sp.id_to_piece(i)} {i}" for i in range(40)]
    assert sp.decode(sp.encode(TEXTS[3])) == TEXTS[3]
    assert (tmp_path / "lang" / "transcript_words.txt").read_text().splitlines() == TEXTS
    assert sorted(p.name for p in (tmp_path / "lang").iterdir()) == [
        "bpe.model",
        "tokens.txt",
        "transcript_words.txt",
    ]


def test_too_large_vocab_is_an_error_giving_the_limit_and_leaves_no_model(tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size 5000 is too large .* at most \d+"):
        train_bpe(TEXTS, tmp_path / "lang", vocab_size=5000)
    assert not (tmp_path / "lang" / "bpe.model").exists()


def test_transcripts_come_from_cuts_without_speed_perturbed_copies(tmp_path):
    cuts = []
    for i, text in enumerate(TEXTS[:3]):
        cut = dummy_cut(i, duration=1.0)
        cut.supervisions = [SupervisionSegment(f"s{i}", cut.recording_id, 0.0, 1.0, text=text)]
        cuts.append(cut)
    cutset = CutSet.from_cuts(cuts)
    cutset = cutset + cutset.modify_ids(lambda i: f"{i}_sp0.9")
    path = tmp_path / "cuts.jsonl.gz"
    cutset.to_file(path)
    assert transcripts_from_manifests([path]) == TEXTS[:3]


def test_a_cut_without_text_is_an_error_naming_it(tmp_path):
    cut = dummy_cut(0, duration=1.0)
    cut.supervisions = [SupervisionSegment("seg-without-text", cut.recording_id, 0.0, 1.0)]
    CutSet.from_cuts([cut]).to_file(tmp_path / "cuts.jsonl.gz")
    with pytest.raises(ValueError, match="seg-without-text has no transcript"):
        transcripts_from_manifests([tmp_path / "cuts.jsonl.gz"])
