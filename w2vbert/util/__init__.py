"""Small helpers every folder may use: the atomic writer, logging set-up, flags from dataclasses, run provenance."""
