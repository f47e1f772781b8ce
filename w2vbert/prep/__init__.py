"""Corpus preparation of stages 0-3: mini-corpus synthesis, Lhotse manifests, stored fbank features, BPE."""
