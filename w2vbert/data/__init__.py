"""Data: corpus synthesis, manifests, features, Lhotse datasets, samplers, cut filters."""
