"""Score fusion of several embedders as one embedder: one vector, one cosine, one index.

The fusion vector of a face is the concatenation of its members' L2-normalised (flip-averaged)
vectors v_i, member i scaled by sqrt(a_i), with sum_i a_i = 1 and a_i proportional to
w_i / sigma_i (inference.embedders.fusion_weights: sigma_i is the standard deviation of member
i's impostor cosines on development data, mu_i their mean, w_i its fusion weight chosen there by
cross-validation). The fusion vector has norm sqrt(sum_i a_i |v_i|^2) = 1, and for two faces

    cos(f, f') = sum_i a_i <v_i, v_i'> = sum_i a_i cos_i
               = (sum_i w_i (cos_i - mu_i) / sigma_i + sum_i w_i mu_i / sigma_i) / sum_j w_j / sigma_j.

That is exact, not an approximation: the segments are orthogonal blocks of the vector, so the
inner product is the sum of the per-segment inner products, and the fused z-score
sum_i w_i (cos_i - mu_i) / sigma_i is an increasing affine function of the fusion cosine (the
positive factor and the offset are constants of the weights file). Any threshold on the z-score
is a threshold on the cosine and the ranking of a gallery is the same, so storage (one pgvector
row per template), the model's HNSW index (cosine distance is 1 - cos), thresholds, floors,
calibration, policies and the API treat the fusion as one more embedder. Each member's vector
stays recoverable as a segment of the template (`member_vectors`).

A re-ranking design would instead store each member's templates under the member's own model,
search one member's index for candidates, then compute the other members' cosines for those
candidates and rank by the fused score: it can combine scores non-linearly (e.g. per-member
score normalisation that is not affine, or a learned combiner), but it loses recall wherever
the first member ranks the true match outside its candidate list, needs a second query per
search and a fusion-specific threshold path. With affine z-score fusion, which is what is
calibrated here, the concatenation gives the same scores with neither cost.

Input: crops aligned to the fusion canvas (inference.templates.FUSION_CANVAS_144, raw 0-255
RGB). Inside one torch module each member's crop is sampled from the canvas through a fixed
similarity between the canvas's points and the member's template points (bilinear, borders
replicated, as cv2.warpAffine does for a direct alignment), then normalised the member's own way
(channel order, mean, scale) and passed to the member's network. Being one nn.Module, the
pipeline's CPU optimisation (trace, freeze, fuse) covers every member at once; on the CPU the
factory first puts each member in its own fastest form, since no one form suits both.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.align import estimate_similarity
from inference.device import resolve_device
from inference.embedders import create_embedder
from inference.embedders.base import Embedder
from inference.embedders.fusion_weights import FusionWeights, FusionWeightsError, load_fusion_weights
from inference.embedders.spec import EmbedderSpec
from inference.templates import AlignTemplate


def canvas_to_member(canvas: AlignTemplate, member: AlignTemplate) -> np.ndarray:
    """The 2x3 similarity taking canvas pixels to the member's crop pixels (least squares on the points)."""
    return estimate_similarity(canvas.points, member.points)


def _sampling_grid(canvas: AlignTemplate, member: AlignTemplate) -> torch.Tensor:
    """1 x H x W x 2 grid for F.grid_sample (align_corners=False): each member pixel's canvas position."""
    matrix = canvas_to_member(canvas, member)
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    width, height = member.size
    us, vs = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    source = np.stack([us, vs, np.ones_like(us)], axis=-1) @ inverse.T  # H x W x 2, canvas pixels
    canvas_width, canvas_height = canvas.size
    # Pixel centres to grid_sample's [-1, 1] over pixel edges.
    normalised = np.empty_like(source)
    normalised[..., 0] = (2.0 * source[..., 0] + 1.0) / canvas_width - 1.0
    normalised[..., 1] = (2.0 * source[..., 1] + 1.0) / canvas_height - 1.0
    return torch.from_numpy(normalised.astype(np.float32))[None]


class MemberBranch(nn.Module):
    """Canvas batch (N x 3 x H x W, raw RGB floats) -> one member's raw network output (N x d)."""

    def __init__(self, canvas: AlignTemplate, member: Embedder) -> None:
        super().__init__()
        if not isinstance(member.module, nn.Module):
            raise TypeError(f"fusion member {member.spec.name} has no torch network to run inside the fusion")
        spec = member.spec
        self.network = member.module
        self.bgr = spec.input.channel_order == "bgr"
        self.register_buffer("grid", _sampling_grid(canvas, spec.template))
        self.register_buffer("mean", torch.tensor(spec.input.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(spec.input.scale, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        grid = self.grid.expand(canvas.shape[0], -1, -1, -1)
        crop = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.bgr:
            crop = crop.flip(1)
        return self.network((crop - self.mean) * self.scale).flatten(1)


class FusionNetwork(nn.Module):
    """Canvas batch -> the members' raw outputs side by side (N x sum d_i)."""

    def __init__(self, canvas: AlignTemplate, members: Sequence[Embedder]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(MemberBranch(canvas, member) for member in members)

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(canvas) for branch in self.branches], dim=1)


class FusionEmbedder(Embedder):
    """Canvas crops in, fusion vectors out: per member L2-normalised, scaled by sqrt(a_i), concatenated."""

    def __init__(
        self,
        spec: EmbedderSpec,
        module: nn.Module,
        device: torch.device,
        *,
        dims: Sequence[int],
        scales: Sequence[float],
        member_specs: Sequence[EmbedderSpec],
    ) -> None:
        if spec.input.mean != (0.0, 0.0, 0.0) or spec.input.scale != (1.0, 1.0, 1.0):
            raise ValueError(f"{spec.name}: the canvas is raw 0-255 RGB; members normalise their own crops")
        if sum(dims) != spec.dim:
            raise ValueError(f"{spec.name}: members give {sum(dims)} dimensions, the spec says {spec.dim}")
        if len(scales) != len(dims) or abs(sum(scales) - 1.0) > 1e-6 or min(scales) < 0:
            raise FusionWeightsError(f"{spec.name}: member shares {tuple(scales)} must be >= 0 and sum to 1")
        super().__init__(spec, module, device)
        self.dims = tuple(int(d) for d in dims)
        self.scales = tuple(float(a) for a in scales)
        self.member_specs = tuple(member_specs)
        self._bounds = np.cumsum((0, *self.dims))

    def embed(
        self, crops: Sequence[np.ndarray], *, flip: bool = True, batch_size: int = 32, normalize: bool = True
    ) -> np.ndarray:
        """N x dim float32; normalize=False gives the members' raw (flip-averaged) outputs side by side."""
        raw = super().embed(crops, flip=flip, batch_size=batch_size, normalize=False)
        if not normalize:
            return raw
        out = np.empty_like(raw)
        for index, scale in enumerate(self.scales):
            start, stop = self._bounds[index], self._bounds[index + 1]
            segment = raw[:, start:stop]
            norms = np.linalg.norm(segment, axis=1, keepdims=True)
            out[:, start:stop] = segment / np.maximum(norms, 1e-12) * np.float32(np.sqrt(scale))
        return out

    def member_vectors(self, vectors: np.ndarray) -> list[np.ndarray]:
        """Each member's unit vectors, recovered from fusion vectors (N x dim)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        parts = []
        for index, scale in enumerate(self.scales):
            segment = vectors[:, self._bounds[index] : self._bounds[index + 1]]
            parts.append(segment / np.float32(np.sqrt(scale)) if scale > 0 else segment)
        return parts

    def __repr__(self) -> str:
        members = ", ".join(f"{s.name} {a:.3f}" for s, a in zip(self.member_specs, self.scales, strict=True))
        return f"<FusionEmbedder {self.spec.name} {self.spec.version} ({members}) on {self.device}>"


def build_fusion(spec: EmbedderSpec, members: Sequence[Embedder], scales: Sequence[float]) -> FusionEmbedder:
    """A fusion of already built members (all on one device) with shares a_i."""
    devices = {str(m.device) for m in members}
    if len(devices) != 1:
        raise ValueError(f"fusion members must share one device, got {sorted(devices)}")
    device = members[0].device
    module = FusionNetwork(spec.template, members).to(device).eval()
    dims = [m.spec.dim for m in members]
    return FusionEmbedder(
        spec, module, device, dims=dims, scales=scales, member_specs=[m.spec for m in members]
    )


def create(
    spec: EmbedderSpec, *, device: str = "auto", weights: str | PathLike[str] | None = None
) -> FusionEmbedder:
    """The factory the registry names for a fusion: members built by name, shares from the weights file."""
    path = Path(weights) if weights is not None else spec.weights_path()
    calibration: FusionWeights = load_fusion_weights(path)
    expected = getattr(spec.weights, "member_names", ())
    if expected and calibration.names != tuple(expected):
        raise FusionWeightsError(
            f"{spec.name}: {path} calibrates {calibration.names}, the spec fuses {expected}"
        )
    torch_device = resolve_device(device)
    members = [create_embedder(name, device=str(torch_device)) for name in calibration.names]
    for member, row in zip(members, calibration.members, strict=True):
        if member.spec.version != row.version:
            # Statistics measured on other weights would mis-scale the member: refuse, do not guess.
            raise FusionWeightsError(
                f"{spec.name}: {path} was calibrated on {row.name} {row.version}, "
                f"this machine has {member.spec.version}; rerun toolkit/dev/fuse_weights.py"
            )
    if torch_device.type == "cpu":
        # Each member in its own fastest CPU form (eager, frozen, or frozen and oneDNN-optimised;
        # inference.cpu_compile): SFace gains from the oneDNN rewrite, intel_0095 loses tenfold,
        # so one choice for the whole fusion (the pipeline's, which still runs on top) cannot fit.
        from inference.cpu_compile import frozen_copy

        members = [frozen_copy(m, "module", (3, m.spec.input_size[1], m.spec.input_size[0])) for m in members]
    return build_fusion(spec, members, calibration.scales())
