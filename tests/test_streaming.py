"""Streaming encoder: chunk mask, settings, stored input statistics, and chunk-by-chunk inference
equal to the full forward with the same chunk mask (paper shape and w2v-BERT 2.0 shape)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from w2vbert.model.chunking import check_chunking, chunk_attention_mask, chunk_steps
from w2vbert.model.config import (
    streaming_problems,
    tiny,
    w2v_bert_2_0_tiny,
    with_streaming,
)
from w2vbert.model.feature_encoder import frame_sums
from w2vbert.model.masking import make_padding_mask
from w2vbert.model.streaming import start_stream, stream_encode
from w2vbert.model.w2vbert import create_w2vbert_encoder


@pytest.fixture(autouse=True)
def deterministic_rng():
    torch.manual_seed(1234)


def test_chunk_mask_allows_own_chunk_and_left_chunks_only():
    s, c = 11, 3
    for left in (1, 2, -1):
        mask = chunk_attention_mask(s, c, left)
        for i in range(s):
            for j in range(s):
                ci, cj = i // c, j // c
                expected = cj <= ci and (left == -1 or ci - cj <= left)
                assert bool(mask[i, j]) == expected, (left, i, j)
    assert bool(chunk_attention_mask(5, -1, -1).all())


def test_bad_chunk_settings_are_errors_naming_the_option():
    assert chunk_steps("640ms", 40, option="--chunk-sizes") == 16
    assert chunk_steps("16", 40, option="--chunk-sizes") == 16
    assert chunk_steps("-1", 40, option="--chunk-sizes") == -1
    with pytest.raises(
        ValueError, match=r"`--chunk-sizes` must be a whole number of 40 ms .*7.5 steps"
    ):
        chunk_steps("300ms", 40, option="--chunk-sizes")
    with pytest.raises(ValueError, match="`--decode-chunk-size` must be positive or -1"):
        chunk_steps("0", 40, option="--decode-chunk-size")
    with pytest.raises(ValueError, match="`--chunk-sizes` must be encoder steps"):
        chunk_steps("fast", 40, option="--chunk-sizes")
    with pytest.raises(ValueError, match="left context .* positive number of chunks or -1"):
        check_chunking(4, 0)
    with pytest.raises(ValueError, match="`chunk_size` must be a positive number"):
        check_chunking(-3, 2)


def test_streaming_problems_name_the_options_of_an_offline_config():
    problems = " ".join(streaming_problems(tiny()))
    assert "`conv_causal`" in problems and "`input_norm`" in problems
    assert streaming_problems(replace(with_streaming(tiny()), frame_stride=2))[0].startswith(
        "`frame_stride` must be 4"
    )
    assert streaming_problems(with_streaming(tiny())) == []
    assert streaming_problems(with_streaming(w2v_bert_2_0_tiny())) == []
    encoder = create_w2vbert_encoder(tiny()).eval()
    with pytest.raises(ValueError, match="`input_norm` must be one of"):
        start_stream(encoder, 1, 2, 2)
    encoder = create_w2vbert_encoder(replace(tiny(), input_norm="frame")).eval()
    x = torch.randn(1, 16, 80)
    with pytest.raises(ValueError, match="`conv_causal=True`"):
        stream_encode(encoder, x, torch.tensor([16]), 2, 2)


def test_stored_input_statistics_normalise_the_training_frames():
    encoder = create_w2vbert_encoder(with_streaming(tiny()))
    x = torch.randn(3, 50, 80) * torch.linspace(0.5, 4.0, 80) + torch.linspace(-8.0, 3.0, 80)
    lens = torch.tensor([50, 20, 33])
    x = x.masked_fill(make_padding_mask(lens, 50).unsqueeze(2), 1e4)  # padding must not count
    stats = encoder.feature_encoder.input_stats
    stats.set_statistics(*frame_sums(x, lens))
    frames = torch.cat([x[i, :n] for i, n in enumerate(lens.tolist())])  # (sum T, F)
    normed = stats(frames)
    torch.testing.assert_close(normed.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.testing.assert_close(normed.std(0, unbiased=False), torch.ones(80), atol=1e-4, rtol=0)
    assert "feature_encoder.input_stats.mean" in encoder.state_dict()
    assert not any("input_stats" in k for k in create_w2vbert_encoder(tiny()).state_dict())


def _streaming_encoder(config):
    encoder = create_w2vbert_encoder(with_streaming(config)).eval()
    stats = encoder.feature_encoder.input_stats
    stats.mean.copy_(torch.randn(80))
    stats.inv_std.copy_(torch.rand(80) + 0.5)
    return encoder


@pytest.mark.parametrize("preset", [tiny, w2v_bert_2_0_tiny], ids=["paper", "w2v-bert-2.0"])
@pytest.mark.parametrize("chunk_size,left_chunks", [(2, 1), (3, 2), (2, -1)])
def test_chunk_by_chunk_encoder_equals_the_full_forward_with_the_chunk_mask(
    preset, chunk_size, left_chunks
):
    encoder = _streaming_encoder(replace(preset(), num_contrastive_layers=1, num_mlm_layers=1))
    lens = torch.tensor([61, 37, 9, 44])  # not multiples of the chunk's frames
    x = torch.randn(4, 61, 80) * 3 + 2
    x = x.masked_fill(make_padding_mask(lens, 61).unsqueeze(2), 7.0)
    with torch.no_grad():
        full, full_lens = encoder(x, lens, chunk_size=chunk_size, left_chunks=left_chunks)
        offline, _ = encoder(x, lens)
    streamed, streamed_lens = stream_encode(encoder, x, lens, chunk_size, left_chunks)
    assert torch.equal(streamed_lens, full_lens)
    worst = 0.0
    for i, n in enumerate(full_lens.tolist()):
        worst = max(worst, float((streamed[i, :n] - full[i, :n]).abs().max()))
    assert worst <= 1e-5
    # the chunk mask matters: without it the outputs differ
    assert float((offline[0, : full_lens[0]] - full[0, : full_lens[0]]).abs().max()) > 1e-3
    # each utterance alone through the chunked full forward gives the batch's values
    with torch.no_grad():
        alone, _ = encoder(x[2:3, :9], lens[2:3], chunk_size=chunk_size, left_chunks=left_chunks)
    torch.testing.assert_close(alone[0], full[2, : alone.size(1)], atol=1e-5, rtol=1e-5)


def test_chunked_shaw_attention_gradients_match_autograd_through_sdpa():
    from w2vbert.model.conformer import shaw_offsets
    from w2vbert.model.shaw_attention import shaw_attention

    n, h, s, d, left, right = 2, 2, 7, 4, 3, 2
    q, k, v = (torch.randn(n, h, s, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rel = torch.randn(n, h, s, left + right + 1, dtype=torch.float64, requires_grad=True)
    offsets = shaw_offsets(s, left, right, q.device)
    padding = make_padding_mask(torch.tensor([7, 5]), s)
    keys = (
        chunk_attention_mask(s, 2, 1).view(1, 1, s, s) & ~padding.view(n, 1, 1, s)
    ) | padding.view(
        n, 1, s, 1
    )  # (N, 1, S, S), as ConformerEncoder builds it
    out = shaw_attention(q, k, v, rel, offsets, keys)
    bias = rel.gather(3, offsets.expand(n, h, s, s)).masked_fill(~keys, float("-inf"))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(out, ref, atol=1e-14)
    g = torch.randn_like(ref)
    for a, b in zip(
        torch.autograd.grad(out, (q, k, v, rel), g), torch.autograd.grad(ref, (q, k, v, rel), g)
    ):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("preset", [tiny, w2v_bert_2_0_tiny], ids=["paper", "w2v-bert-2.0"])
def test_streaming_searches_equal_the_searches_over_the_chunked_full_forward(preset):
    from w2vbert.decoding.search import (
        beam_best,
        beam_start,
        greedy_search_batch,
        greedy_search_chunk,
        greedy_start,
        modified_beam_search,
        modified_beam_search_chunk,
    )
    from w2vbert.decoding.streaming import streaming_search
    from w2vbert.model.transducer import create_transducer

    encoder = _streaming_encoder(replace(preset(), num_contrastive_layers=1, num_mlm_layers=1))
    model = create_transducer(encoder, encoder.output_dim, 12, decoder_dim=16, joiner_dim=16).eval()
    with torch.no_grad():  # emit often, so that the decoder state carried across chunks matters
        model.joiner.output_linear.bias.copy_(torch.linspace(-1.0, 1.5, 12))
        model.joiner.output_linear.weight.mul_(8.0)
    lens = torch.tensor([80, 52, 13])
    x = torch.randn(3, 80, 80) * 3
    with torch.no_grad():
        out, out_lens = encoder(x, lens, chunk_size=2, left_chunks=2)
    expected = greedy_search_batch(model, out, out_lens)
    assert sum(len(h) for h in expected) > 10
    assert streaming_search(model, x, lens, 2, 2) == expected
    # greedy over frames cut anywhere carries its state exactly
    state = greedy_start(model, 3)
    for a, b in ((0, 3), (3, 4), (4, out.size(1))):
        state = greedy_search_chunk(model, out[:, a:b], (out_lens - a).clamp(0, b - a), state)
    assert state.hyps == expected
    beam = modified_beam_search(model, out, out_lens, beam=3)
    assert beam != expected  # (the beam finds other hypotheses: a test that can tell them apart)
    assert streaming_search(model, x, lens, 2, 2, method="modified_beam_search", beam=3) == beam
    state = beam_start(model, 3, 3)
    for a, b in ((0, 3), (3, 4), (4, out.size(1))):
        state = modified_beam_search_chunk(
            model, out[:, a:b], (out_lens - a).clamp(0, b - a), state
        )
    assert beam_best(model, state) == beam


def test_a_bad_left_context_is_an_error_naming_the_command_line_option():
    """Fine-tuning's error named the internal `left_chunks`, not --left-context-chunks."""
    from dataclasses import asdict

    from w2vbert.decoding.decode_sets import DecodeConfig, decoding_chunks
    from w2vbert.training.finetuning import FinetuneOptions, training_chunks

    config = with_streaming(tiny())
    with pytest.raises(ValueError, match=r"\(`--left-context-chunks`\) must be a positive .* is 0"):
        training_chunks(FinetuneOptions(chunk_sizes="2", left_context_chunks=0), config)
    with pytest.raises(ValueError, match=r"\(`--left-context-chunks`\) must be a positive .* -3"):
        decoding_chunks(
            DecodeConfig(decode_chunk_size="2", left_context_chunks=-3),
            {"model_config": asdict(config)},
        )
