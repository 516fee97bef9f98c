"""The face pipeline: pure Python + torch, importable without Django.

Stages, one module each: decode -> detect (MediaPipe Face Mesh) -> quality -> align
-> mask decision -> embed. `inference.pipeline` ties them together for the workers.
"""
