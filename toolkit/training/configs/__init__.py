"""Training configs: `base` and short overrides of it (each file defines `config`)."""
