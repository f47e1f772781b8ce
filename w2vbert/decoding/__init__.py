"""Transducer decoding (greedy, modified beam search, k2 fast beam search) and WER scoring."""

from w2vbert.decoding.scoring import write_error_stats, write_recogs, write_wer_summary
from w2vbert.decoding.search import (
    fast_beam_search,
    greedy_search_batch,
    modified_beam_search,
)

__all__ = [
    "fast_beam_search",
    "greedy_search_batch",
    "modified_beam_search",
    "write_error_stats",
    "write_recogs",
    "write_wer_summary",
]
