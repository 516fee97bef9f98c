"""Where the networks run: the torch device and the CPU thread count, chosen once at start."""

from __future__ import annotations

import cv2
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" is the first CUDA GPU when there is one, else the CPU; "cpu", "cuda", "cuda:1" as given.

    Asking for CUDA where there is none fails here rather than at the first batch.
    """
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}; expected auto, cpu, cuda or cuda:N")
    return device


def configure_threads(n: int) -> None:
    """Limit torch's and OpenCV's CPU threads (a worker process shares the machine with others)."""
    n = max(1, int(n))
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
