"""Verification pairs in the LFW View-2 format.

The file starts with a header `<folds> <n>`, then for each fold n same-person lines
`name i j` and n different-person lines `name1 i name2 j`, tab or space separated. Images
are `ROOT/<name>/<name>_<NNNN>.<jpg|png>`. A header of one number (View-1 style, `n`) means
a single fold of n same and n different lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg")


class PairsFormatError(ValueError):
    """The pairs file does not follow the View-2 format; the message names the line."""


@dataclass(frozen=True)
class Pair:
    """One verification pair: the first image is enrolled, the second is the probe."""

    first: tuple[str, int]
    second: tuple[str, int]
    same: bool
    fold: int

    @property
    def names(self) -> tuple[str, str]:
        return self.first[0], self.second[0]


def parse_pairs(text: str) -> tuple[list[Pair], int]:
    """Pairs (in file order) and the number of folds."""
    rows = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1)]
    rows = [(number, fields) for number, fields in rows if fields]
    if not rows:
        raise PairsFormatError("the pairs file is empty")
    header_line, header = rows[0]
    try:
        numbers = [int(value) for value in header]
    except ValueError as exc:
        raise PairsFormatError(f"line {header_line}: header must be '<folds> <n>', got {header!r}") from exc
    if len(numbers) == 2:
        folds, per_side = numbers
    elif len(numbers) == 1:
        folds, per_side = 1, numbers[0]
    else:
        raise PairsFormatError(f"line {header_line}: header must be '<folds> <n>', got {header!r}")
    if folds < 1 or per_side < 1:
        raise PairsFormatError(f"line {header_line}: folds and n must be positive, got {numbers}")
    body = rows[1:]
    expected = folds * 2 * per_side
    if len(body) != expected:
        raise PairsFormatError(
            f"header says {folds} folds of {per_side} same + {per_side} different pairs "
            f"({expected} lines), the file has {len(body)}"
        )
    pairs: list[Pair] = []
    for position, (number, fields) in enumerate(body):
        fold, within = divmod(position, 2 * per_side)
        same = within < per_side
        try:
            if same:
                if len(fields) != 3:
                    raise PairsFormatError(f"line {number}: a same-person line is 'name i j', got {fields!r}")
                name, i, j = fields
                pair = Pair((name, int(i)), (name, int(j)), True, fold)
            else:
                if len(fields) != 4:
                    raise PairsFormatError(
                        f"line {number}: a different-person line is 'name1 i name2 j', got {fields!r}"
                    )
                name1, i, name2, j = fields
                pair = Pair((name1, int(i)), (name2, int(j)), False, fold)
        except ValueError as exc:
            if isinstance(exc, PairsFormatError):
                raise
            raise PairsFormatError(f"line {number}: image numbers must be integers, got {fields!r}") from exc
        pairs.append(pair)
    return pairs, folds


def read_pairs(path: Path | str) -> tuple[list[Pair], int]:
    return parse_pairs(Path(path).read_text(encoding="utf-8"))


def image_path(root: Path | str, name: str, number: int) -> Path:
    """`ROOT/<name>/<name>_<NNNN>.jpg` (or .png/.jpeg, whichever exists; .jpg when none does)."""
    folder = Path(root) / name
    stem = f"{name}_{number:04d}"
    for extension in IMAGE_EXTENSIONS:
        candidate = folder / (stem + extension)
        if candidate.is_file():
            return candidate
    return folder / (stem + IMAGE_EXTENSIONS[0])


def format_pairs(pairs: list[Pair], folds: int) -> str:
    """The View-2 text for pairs grouped by fold, same pairs before different ones in each fold."""
    per_fold: list[tuple[list[Pair], list[Pair]]] = [([], []) for _ in range(folds)]
    for pair in pairs:
        per_fold[pair.fold][0 if pair.same else 1].append(pair)
    sizes = {len(side) for fold in per_fold for side in fold}
    if len(sizes) != 1:
        raise ValueError(f"every fold needs the same number of same and different pairs, got sizes {sizes}")
    lines = [f"{folds}\t{sizes.pop()}"]
    for same, different in per_fold:
        lines.extend(f"{p.first[0]}\t{p.first[1]}\t{p.second[1]}" for p in same)
        lines.extend(f"{p.first[0]}\t{p.first[1]}\t{p.second[0]}\t{p.second[1]}" for p in different)
    return "\n".join(lines) + "\n"
