"""CPU compilation of the pipeline's networks: a frozen TorchScript copy where it is faster.

On the CPU, frozen copies (convolution, batch norm and activation fused) take about a third less
time for some networks and ten times more for others, so each network's form is chosen by timing.
"""

from __future__ import annotations

import time


def frozen_copy(owner: object, attribute: str, input_shape: tuple[int, int, int]) -> object:
    """A shallow copy of `owner` whose torch network `attribute` is traced and frozen for the CPU.

    Of the eager network, its frozen trace and the frozen trace after optimize_for_inference, the
    fastest on a small batch is kept: the oneDNN rewrite fuses convolutions well but sends some
    networks' PReLUs down a reference path that is ten times slower (intel_0095), so no form is
    assumed best. The original (which a process-wide cache may share) is left alone. The owner
    comes back unchanged off the CPU, when tracing fails (a future torch without TorchScript, say),
    or when a compiled form's output differs from the original's by more than 1e-4.
    """
    import copy
    import warnings

    import torch

    module = getattr(owner, attribute, None)
    device = getattr(owner, "device", None)
    if not isinstance(module, torch.nn.Module) or getattr(device, "type", None) != "cpu":
        return owner
    example = torch.rand(2, *input_shape)
    candidates: list[torch.nn.Module] = [module.eval()]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python code
            traced = torch.jit.trace(module, example, check_trace=False)
            # optimize_for_inference rewrites the module it is given: each form gets its own freeze.
            frozen = torch.jit.freeze(traced)
            candidates += [frozen, torch.jit.optimize_for_inference(torch.jit.freeze(traced))]
            probe = torch.rand(3, *input_shape)
            reference = module(probe)
            candidates = [
                c for c in candidates if c is module or float((c(probe) - reference).abs().max()) <= 1e-4
            ]
            fastest = min(candidates, key=lambda c: _seconds_per_call(c, example))
    except Exception:  # noqa: BLE001 - any failure leaves the eager network in place
        return owner
    if fastest is module:
        return owner
    clone = copy.copy(owner)
    setattr(clone, attribute, fastest)
    return clone


def _seconds_per_call(network: object, example: object, repeats: int = 3) -> float:
    """The best of a few timed calls after a warm-up (the first call of a frozen graph compiles)."""
    network(example)  # type: ignore[operator]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        network(example)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best
