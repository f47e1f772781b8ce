"""exp/RESULTS.md's comparison: rows from whatever ran, the three claims computed from the numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from w2vbert.reporting.results import write_results


def _pretrain(dir_: Path, **final: float) -> None:
    dir_.mkdir(parents=True)
    train = {"split": "train", "step": 10, "loss": 9.0, "code_perplexity": 50.0, "code_usage": 0.5}
    valid = {"split": "valid", "step": 10, **final}
    dir_.joinpath("metrics.jsonl").write_text(json.dumps(train) + "\n" + json.dumps(valid) + "\n")


def _decode(dir_: Path, wers: dict[str, float]) -> None:
    out = dir_ / "greedy_search"
    out.mkdir(parents=True)
    for name, wer in wers.items():
        row = {"set": name, "method": "greedy_search", "suffix": "epoch-1-avg-1", "wer": wer,
               "rtf": 0.01}  # fmt: skip
        (out / f"results-{name}-epoch-1-avg-1.json").write_text(json.dumps(row))


def _claims(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:2] in ("1.", "2.", "3.")]


def test_claims_use_the_feature_quantizer_rows_for_the_collapse_when_they_ran(tmp_path):
    exp, c = tmp_path, tmp_path / "compare"
    _pretrain(exp / "pretrain", code_perplexity=60.0, code_usage=0.8, mlm_acc=0.2)
    _decode(exp / "finetune", {"dev": 50.0, "test": 40.0})
    _decode(c / "finetune-scratch", {"dev": 90.0, "test": 60.0})
    _pretrain(c / "pretrain-contrastive", code_perplexity=70.0, code_usage=0.7)
    _decode(c / "finetune-contrastive", {"dev": 55.0, "test": 45.0})
    _pretrain(c / "pretrain-mlm", code_perplexity=60.0, code_usage=0.8, mlm_acc=0.1)
    _decode(c / "finetune-mlm", {"dev": 80.0, "test": 70.0})
    _pretrain(c / "pretrain-features-w2vbert", code_perplexity=40.0, code_usage=0.6)
    _pretrain(c / "pretrain-features-mlm", code_perplexity=2.1, code_usage=0.02, mlm_acc=0.95)
    _pretrain(c / "pretrain-best-rq", code_perplexity=900.0, code_usage=0.11, mlm_acc=0.05)
    _decode(c / "finetune-best-rq", {"dev": 52.0, "test": 41.0})

    text = write_results(
        exp, title="t", command="c", dev_sets=["dev"], test_sets=["test"]
    ).read_text()
    claims = _claims(text)
    assert "40.00 vs 0.7 x 60.00 = 42.00 -> **held**" in claims[0]
    assert "40.00 vs 45.00 -> **held**" in claims[1]
    assert claims[2].startswith("3. (d') vs (b')") and claims[2].endswith("**held**")
    assert (
        "| (d') MLM only, quantizer on learned features | - | - | - | - | 2.1 | 2.0% | 0.950 |"
        in text
    )
    assert "| (e) BEST-RQ (random-projection targets) | 52.00 | 41.00 | - | - | 900.0 | 11.0% | 0.050 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    assert [r[:4] for r in rows] == ["| (a", "| (b", "| (c", "| (d", "| (e", "| (b", "| (d"]
    assert "4. (not a claim of the paper) BEST-RQ vs w2v-BERT on test: 41.00 vs 40.00 (w2v-BERT lower)" in text
    assert (exp / "plots" / "compare-wer.png").is_file()


def test_claims_fall_back_to_b_and_d_and_say_not_held_with_the_numbers(tmp_path):
    exp, c = tmp_path, tmp_path / "compare"
    _pretrain(exp / "pretrain", code_perplexity=60.0, code_usage=0.3, mlm_acc=0.2)
    _decode(exp / "finetune", {"dev": 95.0, "test": 96.0})
    _decode(c / "finetune-scratch", {"dev": 97.0, "test": 97.0})
    _pretrain(c / "pretrain-mlm", code_perplexity=60.0, code_usage=0.8, mlm_acc=0.1)

    claims = _claims(write_results(exp, title="t", command="c", dev_sets=["dev"],
                                   test_sets=["test"]).read_text())  # fmt: skip
    assert "96.00 vs 0.7 x 97.00 = 67.90 -> **not held**" in claims[0]
    assert "not measured" in claims[1]
    assert claims[2].startswith("3. (d) vs (b)") and claims[2].endswith("**not held**")


def test_cer_comes_from_the_results_file_or_else_from_the_recogs_file(tmp_path):
    from w2vbert.decoding.scoring import write_recogs
    from w2vbert.reporting.collect import decode_results

    _decode(tmp_path / "finetune", {"dev": 50.0})
    out = tmp_path / "finetune" / "greedy_search"
    write_recogs(out / "recogs-dev-epoch-1-avg-1.txt", [("u", ["AB", "C"], ["AB", "D"])])
    (r,) = decode_results(tmp_path / "finetune")
    assert r.cer == pytest.approx(100.0 / 4)  # "AB C" -> "AB D": 1 of 4 characters
    row = json.loads((out / "results-dev-epoch-1-avg-1.json").read_text()) | {"cer": 12.5}
    (out / "results-dev-epoch-1-avg-1.json").write_text(json.dumps(row))
    (r,) = decode_results(tmp_path / "finetune")
    assert r.cer == 12.5
    text = write_results(
        tmp_path, title="t", command="c", dev_sets=["dev"], test_sets=[]
    ).read_text()
    assert "| greedy_search | 50.00 / 12.50 (0.010) |" in text
