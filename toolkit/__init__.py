"""Tooling beside the runtime: evaluation, benchmarks, mask-classifier training, development tools.

Nothing the web process or the worker runs imports this package, and the Docker images do not ship
it (.dockerignore). It imports the runtime (`inference`) to measure it; the runtime never imports
it back. Commands: `python -m toolkit.evaluate`, `toolkit.bench`, `toolkit.bench_api`,
`toolkit.detect_masks`, `toolkit.mask_training.train` and `toolkit.dev.<tool>`.
"""
