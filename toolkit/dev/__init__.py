"""Development tools: they produce the constants, pairs files and measurements the product and
its benchmarks commit (`python -m toolkit.dev.<tool>`)."""
