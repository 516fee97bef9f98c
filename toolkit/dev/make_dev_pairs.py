"""Write a development pairs file (LFW View-2 format) from LFW identities NOT in the test pairs.

Settings (alignment mode, jitter, cutout row, ...) are chosen on these pairs, never on the
View-2 test folds. Every identity under ROOT that no line of the test pairs file names is
eligible; those with two or more images give every same-person pair, and as many
different-person pairs are drawn at random (fixed seed) between distinct eligible identities.
Pairs are shuffled and dealt into folds of equal size, same before different in each fold.

    python -m toolkit.dev.make_dev_pairs --root ../shared/data/lfw/images \
        --exclude ../shared/data/lfw/pairs.txt --out docs/benchmarks/dev_pairs.txt
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path

from toolkit.pairs import IMAGE_EXTENSIONS, Pair, format_pairs, read_pairs
from toolkit.paths import SHARED_DATA

DEFAULT_LFW = SHARED_DATA / "lfw"


def identity_images(root: Path) -> dict[str, list[int]]:
    """Image numbers per identity folder, for files named `<name>_<NNNN>.<ext>`."""
    found: dict[str, list[int]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        numbers = []
        for path in folder.iterdir():
            stem, suffix = path.stem, path.suffix.lower()
            if suffix in IMAGE_EXTENSIONS and stem.startswith(folder.name + "_"):
                tail = stem[len(folder.name) + 1 :]
                if tail.isdigit():
                    numbers.append(int(tail))
        if numbers:
            found[folder.name] = sorted(numbers)
    return found


def make_dev_pairs(
    images: dict[str, list[int]],
    excluded: set[str],
    *,
    folds: int,
    seed: int,
    max_same_per_identity: int | None,
) -> list[Pair]:
    rng = random.Random(seed)
    eligible = {name: numbers for name, numbers in images.items() if name not in excluded}
    same: list[tuple[tuple[str, int], tuple[str, int]]] = []
    for name, numbers in sorted(eligible.items()):
        combos = [((name, i), (name, j)) for i, j in itertools.combinations(numbers, 2)]
        rng.shuffle(combos)
        same.extend(combos[:max_same_per_identity] if max_same_per_identity else combos)
    rng.shuffle(same)
    per_fold = len(same) // folds
    if per_fold < 1:
        raise SystemExit(f"only {len(same)} same-person pairs for {folds} folds")
    same = same[: per_fold * folds]
    names = sorted(eligible)
    different: set[tuple[tuple[str, int], tuple[str, int]]] = set()
    while len(different) < len(same):
        a, b = rng.sample(names, 2)
        different.add(((a, rng.choice(eligible[a])), (b, rng.choice(eligible[b]))))
    different_list = sorted(different)
    rng.shuffle(different_list)
    pairs = []
    for fold in range(folds):
        chunk = slice(fold * per_fold, (fold + 1) * per_fold)
        pairs.extend(Pair(first, second, True, fold) for first, second in same[chunk])
        pairs.extend(Pair(first, second, False, fold) for first, second in different_list[chunk])
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_LFW / "images", help="LFW images folder")
    parser.add_argument(
        "--exclude", type=Path, nargs="+", default=[DEFAULT_LFW / "pairs.txt"],
        help="pairs files whose identities are left out (the test protocol)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--max-same-per-identity", type=int, default=None)
    args = parser.parse_args(argv)

    excluded: set[str] = set()
    for path in args.exclude:
        pairs, _ = read_pairs(path)
        for pair in pairs:
            excluded.update(pair.names)
    images = identity_images(args.root)
    pairs = make_dev_pairs(
        images, excluded, folds=args.folds, seed=args.seed, max_same_per_identity=args.max_same_per_identity
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(format_pairs(pairs, args.folds), encoding="utf-8")
    used = {name for pair in pairs for name in pair.names}
    print(
        f"{len(pairs)} pairs ({len(pairs) // 2} same, {len(pairs) // 2} different) in {args.folds} folds "
        f"from {len(used)} identities not among the {len(excluded)} in {', '.join(map(str, args.exclude))}"
        f" -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
