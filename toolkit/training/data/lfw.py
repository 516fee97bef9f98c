"""The mask-tuning set drawn from LFW, and the identities it must never contain.

No large identity-labelled face set is reachable here, so the mask-tuned model trains on LFW
and is reported on what it never saw: View-2 folds 6-10 and the development pairs. The training
identities are those named in folds 1-5 of View-2's pairs.txt plus the LFW identities pairs.txt
never names, minus every identity named in folds 6-10 and every identity of
docs/benchmarks/dev_pairs.txt. (View-2's folds are meant to be identity-disjoint; the
subtraction makes sure of it instead of trusting it.) `check_held_out` re-checks any list of
training names and raises HeldOutLeakError; the builders call it on their own result.

Folds are numbered 1-10 here as LFW's README does; `toolkit.pairs.Pair.fold` counts from 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from toolkit.dev.make_dev_pairs import identity_images
from toolkit.pairs import Pair, image_path, read_pairs
from toolkit.paths import BENCHMARKS, SHARED_DATA

DEFAULT_ROOT = SHARED_DATA / "lfw" / "images"
DEFAULT_PAIRS = SHARED_DATA / "lfw" / "pairs.txt"
DEFAULT_DEV_PAIRS = BENCHMARKS / "dev_pairs.txt"
TRAIN_FOLDS = (1, 2, 3, 4, 5)
TEST_FOLDS = (6, 7, 8, 9, 10)


class HeldOutLeakError(RuntimeError):
    """A training identity is one the reported evaluation (folds 6-10, dev pairs) uses."""


@dataclass(frozen=True)
class LfwProtocol:
    """Who the View-2 folds and the development pairs name."""

    pairs: tuple[Pair, ...]
    dev_pairs: tuple[Pair, ...]

    @property
    def named(self) -> frozenset[str]:
        """Every identity named anywhere in pairs.txt."""
        return frozenset(n for pair in self.pairs for n in pair.names)

    def fold_names(self, folds: Iterable[int]) -> frozenset[str]:
        """Identities named in the given View-2 folds (1-based)."""
        wanted = {fold - 1 for fold in folds}
        return frozenset(n for pair in self.pairs if pair.fold in wanted for n in pair.names)

    @property
    def train_fold_names(self) -> frozenset[str]:
        return self.fold_names(TRAIN_FOLDS)

    @property
    def test_fold_names(self) -> frozenset[str]:
        return self.fold_names(TEST_FOLDS)

    @property
    def dev_names(self) -> frozenset[str]:
        return frozenset(n for pair in self.dev_pairs for n in pair.names)

    @property
    def held_out(self) -> frozenset[str]:
        """What training must never see: folds 6-10 and the development pairs."""
        return self.test_fold_names | self.dev_names

    def held_out_images(self) -> list[tuple[str, int]]:
        """(name, number) of every image a pair of folds 6-10 or of the dev pairs names, sorted."""
        test = {fold - 1 for fold in TEST_FOLDS}
        images = {side for pair in self.pairs if pair.fold in test for side in (pair.first, pair.second)}
        images |= {side for pair in self.dev_pairs for side in (pair.first, pair.second)}
        return sorted(images)


def load_protocol(
    pairs: Path | str = DEFAULT_PAIRS, dev_pairs: Path | str = DEFAULT_DEV_PAIRS
) -> LfwProtocol:
    view2, folds = read_pairs(pairs)
    if folds != 10:
        raise ValueError(f"{pairs}: expected LFW View-2's 10 folds, the header says {folds}")
    dev, _ = read_pairs(dev_pairs)
    return LfwProtocol(tuple(view2), tuple(dev))


def check_held_out(names: Iterable[str], protocol: LfwProtocol) -> None:
    """Raise HeldOutLeakError when any name is in folds 6-10 or the development pairs."""
    leaked = sorted(set(names) & protocol.held_out)
    if leaked:
        where = [
            "folds 6-10" if n in protocol.test_fold_names else "the development pairs" for n in leaked[:5]
        ]
        shown = ", ".join(f"{n} ({w})" for n, w in zip(leaked[:5], where, strict=True))
        raise HeldOutLeakError(f"{len(leaked)} training identities are held out for evaluation: {shown}")


def mask_tuning_identities(images: Mapping[str, list[int]], protocol: LfwProtocol) -> dict[str, list[int]]:
    """Identity -> image numbers of the mask-tuning set (see the module docstring), sorted by name."""
    eligible = (protocol.train_fold_names | (set(images) - protocol.named)) - protocol.held_out
    chosen = {name: sorted(images[name]) for name in sorted(eligible) if images.get(name)}
    check_held_out(chosen, protocol)
    return chosen


@dataclass(frozen=True)
class LfwImage:
    name: str
    number: int
    path: Path


def training_images(
    root: Path | str = DEFAULT_ROOT,
    pairs: Path | str = DEFAULT_PAIRS,
    dev_pairs: Path | str = DEFAULT_DEV_PAIRS,
) -> list[LfwImage]:
    """Every image of the mask-tuning identities under root, sorted by (name, number)."""
    protocol = load_protocol(pairs, dev_pairs)
    chosen = mask_tuning_identities(identity_images(Path(root)), protocol)
    return [LfwImage(n, k, image_path(root, n, k)) for n, numbers in chosen.items() for k in numbers]


def held_out_images(
    root: Path | str = DEFAULT_ROOT,
    pairs: Path | str = DEFAULT_PAIRS,
    dev_pairs: Path | str = DEFAULT_DEV_PAIRS,
) -> list[LfwImage]:
    """The images the folds 6-10 and development pairs name (for evaluating on them, never training)."""
    protocol = load_protocol(pairs, dev_pairs)
    return [LfwImage(n, k, image_path(root, n, k)) for n, k in protocol.held_out_images()]
