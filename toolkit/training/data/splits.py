"""Identity-level train/validation splits and held-out verification pairs.

An identity goes to validation when a seeded hash of its name falls below the validation
fraction: the decision depends on the name and the seed only, so adding or removing other
identities never moves one (a sorted-list shuffle would reshuffle everything). Validation then
measures verification on people the network never trained on; validating on images of the
training identities, as the original did, says nothing about new faces.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


def identity_unit(name: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, name): uniform over names."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_validation(name: str, fraction: float, seed: int) -> bool:
    return identity_unit(name, seed) < fraction


@dataclass(frozen=True)
class IdentitySplit:
    train: list[str]  # sorted
    validation: list[str]  # sorted


def split_identities(names: Sequence[str], validation_fraction: float, seed: int = 0) -> IdentitySplit:
    """Each name on one side, by its own seeded hash (about `validation_fraction` of them validate)."""
    if not 0.0 <= validation_fraction <= 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1], got {validation_fraction}")
    unique = sorted(set(names))
    validation = [n for n in unique if is_validation(n, validation_fraction, seed)]
    held = set(validation)
    return IdentitySplit([n for n in unique if n not in held], validation)


def split_samples(
    identities: Sequence[str], validation_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices (train, validation) for samples given by their identity names."""
    mask = np.array([is_validation(n, validation_fraction, seed) for n in identities], dtype=bool)
    return np.nonzero(~mask)[0], np.nonzero(mask)[0]


def dense_labels(identities: Sequence[Hashable]) -> tuple[np.ndarray, list[Hashable]]:
    """Labels 0..C-1 by sorted identity, and the identities in label order."""
    names = sorted(set(identities))
    position = {name: label for label, name in enumerate(names)}
    return np.array([position[n] for n in identities], dtype=np.int64), names


def verification_pairs(
    identities: Sequence[Hashable],
    *,
    genuine: int | None = None,
    impostor: int | None = None,
    max_genuine_per_identity: int | None = 10,
    seed: int = 0,
) -> np.ndarray:
    """Seeded verification pairs over samples: (P, 3) int64 rows (i, j, same), indices into `identities`.

    Genuine pairs: every pair of one identity's samples (at most `max_genuine_per_identity` per
    identity, so a few prolific people do not dominate), shuffled, the first `genuine` kept
    (all when None). Impostor pairs: distinct pairs of samples of two different identities,
    drawn at random, as many as genuine pairs unless `impostor` says otherwise. Genuine rows
    come first; the same seed and input give the same pairs.
    """
    rng = random.Random(seed)
    groups: dict[Hashable, list[int]] = {}
    for index, name in enumerate(identities):
        groups.setdefault(name, []).append(index)
    names = sorted(groups, key=str)
    same: list[tuple[int, int]] = []
    for name in names:
        combos = list(itertools.combinations(groups[name], 2))
        rng.shuffle(combos)
        same.extend(combos[:max_genuine_per_identity] if max_genuine_per_identity else combos)
    rng.shuffle(same)
    if genuine is not None:
        same = same[:genuine]
    wanted = len(same) if impostor is None else impostor
    if wanted and len(names) < 2:
        raise ValueError("impostor pairs need samples of at least two identities")
    possible = _impostor_pair_count(groups)
    if wanted > possible:
        raise ValueError(f"asked for {wanted} impostor pairs, only {possible} exist")
    different: set[tuple[int, int]] = set()
    while len(different) < wanted:
        a, b = rng.sample(names, 2)
        i, j = rng.choice(groups[a]), rng.choice(groups[b])
        different.add((min(i, j), max(i, j)))
    impostors = sorted(different)
    rng.shuffle(impostors)
    rows = [(i, j, 1) for i, j in same] + [(i, j, 0) for i, j in impostors]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _impostor_pair_count(groups: dict[Hashable, list[int]]) -> int:
    sizes = np.array([len(v) for v in groups.values()], dtype=np.int64)
    return int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)
