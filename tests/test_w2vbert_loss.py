"""w2v-BERT objective against hand-written references."""

import math

import pytest
import torch
import torch.nn.functional as F

from w2vbert.model.w2vbert import W2VBertOutput
from w2vbert.objectives.w2vbert_loss import contrastive_logits, sample_distractors, w2vbert_loss


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _output(
    num_masked: list[int], dim: int = 6, groups: int = 1, entries: int = 4
) -> W2VBertOutput:
    """A model output with random tensors; few entries so that equal codes occur."""
    g = _gen(11)
    total = sum(num_masked)
    ids = torch.randint(0, entries, (total, groups), generator=g)
    codebook = torch.randn(groups, entries, dim // groups, generator=g)
    targets = torch.cat([codebook[k][ids[:, k]] for k in range(groups)], dim=1)
    probs = torch.softmax(torch.randn(groups, entries, generator=g), dim=1)
    perplexity = torch.exp(-(probs * probs.log()).sum(dim=1)).sum()
    num_steps = max(num_masked) + 2
    mask = torch.zeros(len(num_masked), num_steps, dtype=torch.bool)
    for i, n in enumerate(num_masked):
        mask[i, :n] = True
    return W2VBertOutput(
        mask=mask,
        seq_lens=torch.full((len(num_masked),), num_steps),
        num_masked=torch.tensor(num_masked),
        quantized_targets=targets.requires_grad_(),
        target_ids=ids,
        projected_context=torch.randn(total, dim, generator=g).requires_grad_(),
        mlm_logits=torch.randn(total, groups, entries, generator=g).requires_grad_(),
        code_probs=probs,
        prob_perplexity=perplexity,
        code_perplexity=perplexity,
        code_usage=torch.tensor(1.0),
        temperature=2.0,
    )


def test_distractors_never_include_the_positive_and_stay_inside_the_utterance():
    num_masked = torch.tensor([5, 1, 2, 40, 0, 3])
    idx = sample_distractors(num_masked, 100, _gen())
    counts = num_masked[idx.seq_ids]
    assert idx.distractors.shape == (51, 100)
    assert torch.equal(idx.valid, counts > 1)
    d, p = idx.distractors[idx.valid], idx.positions[idx.valid].unsqueeze(1)
    assert (d != p).all()
    assert (d >= 0).all() and (d < counts[idx.valid].unsqueeze(1)).all()
    # Uniform over the others: with 100 draws each of the 4 others of a 5-step utterance appears.
    first = idx.distractors[0]
    assert set(first.tolist()) == {1, 2, 3, 4}


def test_distractors_are_roughly_uniform_over_the_other_steps():
    idx = sample_distractors(torch.tensor([11]), 2000, _gen(1))
    counts = torch.bincount(idx.distractors[3], minlength=11).float()
    assert counts[3] == 0
    others = torch.cat([counts[:3], counts[4:]])
    assert (others - 200).abs().max() < 60


def _reference_infonce(out: W2VBertOutput, idx, temp: float) -> tuple[float, float]:
    """Per-masked-step loop: cosine similarities, same-code distractors excluded."""
    offsets = torch.cumsum(out.num_masked, 0) - out.num_masked
    losses, correct = [], 0
    for b in range(out.quantized_targets.size(0)):
        ctx = out.projected_context[b]
        start = int(offsets[idx.seq_ids[b]])
        logits = [F.cosine_similarity(ctx, out.quantized_targets[b], dim=0) / temp]
        if bool(idx.valid[b]):
            for k in idx.distractors[b].tolist():
                j = start + k
                assert j != b
                if torch.equal(out.target_ids[j], out.target_ids[b]):
                    continue
                logits.append(F.cosine_similarity(ctx, out.quantized_targets[j], dim=0) / temp)
        logits_t = torch.stack(logits)
        losses.append(-torch.log_softmax(logits_t, 0)[0])
        correct += int(logits_t.argmax() == 0)
    return float(torch.stack(losses).mean().detach()), correct / len(losses)


def test_contrastive_loss_equals_a_hand_written_per_step_infonce():
    out = _output([6, 1, 9, 3], dim=6, groups=2, entries=3)
    idx = sample_distractors(out.num_masked, 7, _gen(5))
    loss = w2vbert_loss(out, num_distractors=7, logit_temp=0.1, distractors=idx)
    expected, acc = _reference_infonce(out, idx, 0.1)
    assert loss.contrastive.item() == pytest.approx(expected, rel=1e-5)
    assert loss.contrastive_acc == pytest.approx(acc)
    assert loss.num_masked == 19


def test_mlm_and_diversity_losses_match_their_definitions_and_weights_combine():
    out = _output([4, 5], groups=2, entries=4, dim=6)
    loss = w2vbert_loss(
        out, contrastive_weight=0.5, mlm_weight=2.0, diversity_weight=0.3, generator=_gen()
    )
    logits = out.mlm_logits.reshape(-1, 4)
    labels = out.target_ids.reshape(-1)
    expected_mlm = sum(-torch.log_softmax(logits[i], 0)[labels[i]] for i in range(18)) / 18
    assert loss.mlm.item() == pytest.approx(expected_mlm.item(), rel=1e-5)
    assert loss.mlm_acc == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert loss.diversity.item() == pytest.approx((8 - out.prob_perplexity.item()) / 8, rel=1e-6)
    expected = 0.5 * loss.contrastive + 0.3 * loss.diversity + 2.0 * loss.mlm
    assert loss.aggregate.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_distractor_with_the_positive_code_gets_a_minus_infinity_logit():
    out = _output([3, 1], groups=1, entries=4)
    out.target_ids = torch.tensor([[0], [0], [1], [2]])
    idx = sample_distractors(out.num_masked, 30, _gen())
    logits = contrastive_logits(
        out.projected_context, out.quantized_targets, out.target_ids, idx, 0.1
    )
    assert torch.isfinite(logits[:, 0]).all()  # positives always kept
    same = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)  # same code, 1st utt
    blocked = same[idx.positions[:3].unsqueeze(1), idx.distractors[:3]]
    assert torch.equal(torch.isinf(logits[:3, 1:]), blocked)
    assert torch.isinf(logits[3, 1:]).all()  # a single masked step has no distractor
    loss = w2vbert_loss(out, num_distractors=30, distractors=idx)
    assert loss.contrastive.item() == pytest.approx(_reference_infonce(out, idx, 0.1)[0], rel=1e-5)


def test_loss_raises_when_a_weighted_part_is_missing_from_the_output():
    out = _output([3])
    out.mlm_logits = None
    with pytest.raises(ValueError, match="`mlm_weight` must be 0 for a model without MLM head"):
        w2vbert_loss(out)
    out = _output([3])
    out.projected_context = None
    with pytest.raises(ValueError, match="`contrastive_weight` must be 0"):
        w2vbert_loss(out)
    loss = w2vbert_loss(out, contrastive_weight=0.0)
    loss.aggregate.backward()
    assert out.quantized_targets.grad is not None  # kept in the graph for DDP


def test_without_block_same_code_a_collapsed_codebook_costs_ln_k_plus_1():
    out = _output([6, 6], groups=1, entries=4)
    out.target_ids = torch.zeros_like(out.target_ids)  # every step has code 0 ...
    out.quantized_targets = out.quantized_targets[:1].expand_as(out.quantized_targets).clone()
    idx = sample_distractors(out.num_masked, 5, _gen())
    blocked = w2vbert_loss(out, num_distractors=5, distractors=idx)
    plain = w2vbert_loss(out, num_distractors=5, distractors=idx, block_same_code=False)
    assert blocked.contrastive.item() == pytest.approx(0.0, abs=1e-6)  # ... and costs nothing
    # plain draw: the positive ties with all 5 distractors (the same vector): ln(1 + 5)
    assert plain.contrastive.item() == pytest.approx(math.log(6), rel=1e-5)
    logits = contrastive_logits(
        out.projected_context, out.quantized_targets, out.target_ids, idx, 0.1, False
    )
    assert torch.isfinite(logits).all()
