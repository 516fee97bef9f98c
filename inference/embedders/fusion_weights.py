"""A fusion model's calibration: each member's impostor statistics and fusion weight (plain data).

The file (inference/weights/<fusion name>.json, written by toolkit/dev/fuse_weights.py from
development data only) holds, per member, the mean mu_i and standard deviation sigma_i of its
impostor cosine scores and its fusion weight w_i. The fused score of a pair is the z-score sum
sum_i w_i (cos_i - mu_i) / sigma_i; the fusion vector scales member i's unit vector by
sqrt(a_i), a_i = (w_i / sigma_i) / sum_j (w_j / sigma_j), so that the cosine of two fusion vectors
is sum_i a_i cos_i, an increasing affine function of that sum (inference.embedders.fusion).

numpy and the standard library only: the registry reads this file at import, in the web process
too, to name the model's version.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from inference.embedders.spec import WeightsSource

FORMAT = "faceid-fusion-weights/1"


class FusionWeightsError(ValueError):
    """The fusion weights file is missing a field, or a value is out of range."""


@dataclass(frozen=True)
class MemberCalibration:
    name: str
    version: str  # the member's model version the statistics were measured with
    impostor_mean: float
    impostor_std: float
    weight: float


@dataclass(frozen=True)
class FusionWeights:
    members: tuple[MemberCalibration, ...]
    # How the numbers were chosen (command, data, cross-validation results): kept, not interpreted.
    selection: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise FusionWeightsError("a fusion needs at least two members")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise FusionWeightsError(f"member names repeat: {names}")
        for m in self.members:
            if not (math.isfinite(m.impostor_std) and m.impostor_std > 0):
                raise FusionWeightsError(
                    f"{m.name}: impostor_std must be a positive number, got {m.impostor_std}"
                )
            if not math.isfinite(m.impostor_mean) or not -1.0 <= m.impostor_mean <= 1.0:
                raise FusionWeightsError(
                    f"{m.name}: impostor_mean must lie in [-1, 1], got {m.impostor_mean}"
                )
            if not (math.isfinite(m.weight) and m.weight >= 0):
                raise FusionWeightsError(f"{m.name}: weight must be >= 0, got {m.weight}")
        if sum(m.weight for m in self.members) <= 0:
            raise FusionWeightsError("at least one member weight must be positive")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def scales(self) -> tuple[float, ...]:
        """a_i: w_i / sigma_i normalised to sum 1 (the share of member i in the fusion cosine)."""
        return member_scales([m.weight for m in self.members], [m.impostor_std for m in self.members])

    def fused_cosine_to_zscore(self, cosine: float) -> float:
        """The z-score sum sum_i w_i (cos_i - mu_i) / sigma_i for a fusion cosine sum_i a_i cos_i."""
        ratio = sum(m.weight / m.impostor_std for m in self.members)
        offset = sum(m.weight * m.impostor_mean / m.impostor_std for m in self.members)
        return ratio * cosine - offset

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "members": [
                {
                    "name": m.name,
                    "version": m.version,
                    "impostor_mean": m.impostor_mean,
                    "impostor_std": m.impostor_std,
                    "weight": m.weight,
                }
                for m in self.members
            ],
            "scales": list(self.scales()),
            "selection": self.selection,
        }


def member_scales(
    weights: list[float] | tuple[float, ...], stds: list[float] | tuple[float, ...]
) -> tuple[float, ...]:
    """a_i proportional to w_i / sigma_i, summing to 1."""
    raw = [w / s for w, s in zip(weights, stds, strict=True)]
    total = sum(raw)
    if not total > 0:
        raise FusionWeightsError("the weights give no positive share to any member")
    return tuple(r / total for r in raw)


def parse_fusion_weights(data: object) -> FusionWeights:
    """Validate a decoded JSON document; FusionWeightsError says which field is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FusionWeightsError(f"not a fusion weights document (expected format {FORMAT!r})")
    rows = data.get("members")
    if not isinstance(rows, list):
        raise FusionWeightsError("members must be a list")
    members = []
    for row in rows:
        if not isinstance(row, dict):
            raise FusionWeightsError("each member must be an object")
        try:
            members.append(
                MemberCalibration(
                    name=str(row["name"]),
                    version=str(row["version"]),
                    impostor_mean=float(row["impostor_mean"]),
                    impostor_std=float(row["impostor_std"]),
                    weight=float(row["weight"]),
                )
            )
        except KeyError as missing:
            raise FusionWeightsError(f"a member lacks {missing}") from None
        except (TypeError, ValueError) as bad:
            raise FusionWeightsError(f"member {row.get('name')!r}: {bad}") from None
    selection = data.get("selection", {})
    weights = FusionWeights(tuple(members), selection if isinstance(selection, dict) else {})
    stored = data.get("scales")
    # The stored shares are derived; a file whose shares disagree has been edited by hand.
    if stored is not None and (
        not isinstance(stored, list)
        or len(stored) != len(members)
        or any(abs(float(a) - b) > 1e-9 for a, b in zip(stored, weights.scales(), strict=True))
    ):
        raise FusionWeightsError("scales disagree with weight / impostor_std; regenerate the file")
    return weights


def load_fusion_weights(path: Path) -> FusionWeights:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as bad:
        raise FusionWeightsError(f"{path}: not JSON ({bad})") from None
    return parse_fusion_weights(data)


def fusion_version(base: str, path: Path | None, member_versions: tuple[str, ...]) -> str:
    """`base` plus a digest of the weights file and the members' versions (<= 64 characters).

    Vectors change when either does, and a stored template records this string.
    """
    digest = hashlib.sha256("\n".join(member_versions).encode())
    if path is not None and Path(path).is_file():
        digest.update(Path(path).read_bytes())
    else:
        digest.update(b"no weights file")
    return f"{base}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class FusionWeightsSource(WeightsSource):
    """The fusion's own calibration file, available only when every member's weights are too."""

    member_names: tuple[str, ...] = ()
    members: tuple[WeightsSource, ...] = ()

    @property
    def available(self) -> bool:
        return super().available and all(member.available for member in self.members)
