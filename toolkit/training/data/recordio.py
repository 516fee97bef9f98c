"""MXNet RecordIO (`train.rec` + `train.idx`), the format of MS1MV2, MS1MV3 and Glint360K, without mxnet.

The framing is dmlc-core's (src/recordio.cc): every frame is the magic 0xced7230a (uint32, little
endian), then `lrecord` (uint32: the upper 3 bits a continuation flag, the lower 29 the length),
then the data, zero-padded to 4 bytes. The writer splits a record wherever the magic number
occurs in its data at a 4-byte-aligned position, so that a reader scanning for the magic can
resynchronise: cflag 0 is a whole record, 1 its first part, 2 a middle part, 3 the last; the
magic dropped at each split is put back between the parts when the record is reassembled.

The index has one `key<TAB>offset` line per record. Each record is an image record (mxnet's
`recordio.pack`): the header struct `IfQQ` (flag, label, id, id2); when flag > 0, `flag` float32
labels follow (the label is the first) and then the image bytes (JPEG for the face sets).

insightface's convention for the face sets (arcface_torch/dataset.py): when record 0's header
has flag > 0, its labels (a, b) say the images are keys 1 .. a-1 and the identity records a .. b-1
(each holding the [start, end) range of its identity's image keys); otherwise every key of the
index is an image. `property` beside the files holds "num_classes,height,width".

    python -m toolkit.training.data.recordio check DIR      # read every record, count images
    python -m toolkit.training.data.recordio convert FOLDER DIR  # one sub-folder per identity
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_BITS = 29
MAX_RECORD_BYTES = (1 << _LENGTH_BITS) - 1
_FRAME_HEADER = struct.Struct("<II")
IR_FORMAT = "<IfQQ"
_IR = struct.Struct(IR_FORMAT)
IR_SIZE = _IR.size  # 24
# Continuation flags of a frame.
WHOLE, FIRST, MIDDLE, LAST = 0, 1, 2, 3


class RecordIOError(ValueError):
    """The .rec or .idx file is missing, truncated or not RecordIO; the message says where."""


@dataclass(frozen=True)
class IRHeader:
    """mxnet's image-record header. `labels` holds the float32 labels that follow when flag > 0."""

    flag: int
    label: float
    id: int
    id2: int
    labels: tuple[float, ...] = ()

    @property
    def first_label(self) -> float:
        """The record's label: the scalar, or the first of the label array (insightface's rule)."""
        return self.labels[0] if self.flag > 0 else self.label


def pack_record(label: float | Sequence[float], payload: bytes, *, id: int = 0, id2: int = 0) -> bytes:
    """An image record as mxnet's `recordio.pack` makes it: a scalar label gives flag 0, a sequence
    gives flag = its length, the labels as float32 between the header and the payload."""
    if isinstance(label, int | float | np.integer | np.floating):
        return _IR.pack(0, float(label), id, id2) + bytes(payload)
    labels = np.asarray(label, dtype="<f4").ravel()
    if labels.size == 0:
        raise ValueError("a label array needs at least one value")
    return _IR.pack(labels.size, 0.0, id, id2) + labels.tobytes() + bytes(payload)


def unpack_record(record: bytes, *, where: str = "record") -> tuple[IRHeader, bytes]:
    """The header and the payload (image bytes) of an image record."""
    if len(record) < IR_SIZE:
        raise RecordIOError(f"{where}: {len(record)} bytes, shorter than the {IR_SIZE}-byte image header")
    flag, label, ident, ident2 = _IR.unpack_from(record)
    body = memoryview(record)[IR_SIZE:]
    labels: tuple[float, ...] = ()
    if flag > 0:
        if len(body) < 4 * flag:
            raise RecordIOError(f"{where}: header announces {flag} labels but only {len(body)} bytes follow")
        labels = tuple(float(x) for x in np.frombuffer(body[: 4 * flag], dtype="<f4"))
        body = body[4 * flag :]
    return IRHeader(int(flag), float(label), int(ident), int(ident2), labels), bytes(body)


def frame_record(record: bytes) -> bytes:
    """The bytes dmlc's RecordIOWriter::WriteRecord writes for one record (split at aligned magics)."""
    data = bytes(record)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"a record holds at most {MAX_RECORD_BYTES} bytes, got {len(data)}")
    out = bytearray()
    start = 0
    for position in range(0, len(data) - len(data) % 4, 4):
        if data[position : position + 4] == _MAGIC_BYTES:
            out += _frame(FIRST if start == 0 else MIDDLE, data[start:position])
            start = position + 4
    out += _frame(LAST if start else WHOLE, data[start:])
    return bytes(out)


def _frame(cflag: int, chunk: bytes) -> bytes:
    padding = -len(chunk) % 4
    return _FRAME_HEADER.pack(MAGIC, (cflag << _LENGTH_BITS) | len(chunk)) + chunk + b"\0" * padding


def read_index(idx_path: Path | str) -> dict[int, int]:
    """key -> byte offset, in file order, from `key<TAB>offset` lines (blank lines ignored)."""
    path = Path(idx_path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise RecordIOError(f"index file {path} not found (a .rec needs its .idx beside it)") from None
    except UnicodeDecodeError as exc:
        raise RecordIOError(f"{path}: not a RecordIO index (non-ASCII byte at {exc.start})") from None
    index: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            key, offset = (int(value) for value in fields)
        except ValueError:
            raise RecordIOError(f"{path}, line {number}: expected 'key<TAB>offset', got {line!r}") from None
        if offset < 0:
            raise RecordIOError(f"{path}, line {number}: negative offset {offset}")
        index[key] = offset
    if not index:
        raise RecordIOError(f"{path}: the index is empty")
    return index


def index_path_for(rec_path: Path) -> Path:
    """`train.rec` -> `train.idx` (mxnet's naming)."""
    return rec_path.with_suffix(".idx")


class IndexedRecordReader:
    """Random access to the records of a .rec through its .idx; safe across DataLoader workers.

    Reads with os.pread on a descriptor opened lazily in each process (a forked worker opens its
    own), so concurrent readers never share a file position.
    """

    def __init__(self, rec_path: Path | str, idx_path: Path | str | None = None) -> None:
        self._fd: int | None = None
        self._pid = -1
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise RecordIOError(f"record file {self.rec_path} not found")
        self.idx_path = Path(idx_path) if idx_path is not None else index_path_for(self.rec_path)
        self.index = read_index(self.idx_path)
        self.keys = list(self.index)
        self.size = self.rec_path.stat().st_size
        past_end = [key for key, offset in self.index.items() if offset + _FRAME_HEADER.size > self.size]
        if past_end:
            raise RecordIOError(
                f"{self.rec_path} is truncated: it has {self.size} bytes but {self.idx_path.name} places "
                f"{len(past_end)} record(s) beyond that (first: key {past_end[0]} at byte "
                f"{self.index[past_end[0]]})"
            )
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.update(_fd=None, _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            with self._lock:
                if self._fd is None or self._pid != os.getpid():
                    self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                    self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> IndexedRecordReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: int) -> bool:
        return key in self.index

    def read(self, key: int) -> bytes:
        """The record stored under `key`, parts reassembled."""
        try:
            offset = self.index[key]
        except KeyError:
            raise KeyError(f"no record with key {key} in {self.idx_path}") from None
        return self.read_at(offset, where=f"{self.rec_path.name} key {key}")

    def read_at(self, offset: int, *, where: str = "record") -> bytes:
        fd = self._descriptor()
        parts: list[bytes] = []
        position = offset
        while True:
            head = os.pread(fd, _FRAME_HEADER.size, position)
            if len(head) < _FRAME_HEADER.size:
                raise RecordIOError(
                    f"{where}: truncated file, the frame header at byte {position} is cut by the end "
                    f"of the file ({self.size} bytes)"
                )
            magic, lrecord = _FRAME_HEADER.unpack(head)
            if magic != MAGIC:
                raise RecordIOError(
                    f"{where}: no RecordIO magic at byte {position} (found {magic:#010x}): "
                    "corrupt file or an index that does not belong to it"
                )
            cflag, length = lrecord >> _LENGTH_BITS, lrecord & MAX_RECORD_BYTES
            expected = (WHOLE, FIRST) if not parts else (MIDDLE, LAST)
            if cflag not in expected:
                raise RecordIOError(
                    f"{where}: frame at byte {position} has continuation flag {cflag}, expected one of "
                    f"{expected}: corrupt file"
                )
            chunk = os.pread(fd, length, position + _FRAME_HEADER.size) if length else b""
            if len(chunk) < length:
                raise RecordIOError(
                    f"{where}: truncated file, the record at byte {position} announces {length} bytes "
                    f"but the file ends after {len(chunk)}"
                )
            parts.append(chunk)
            position += _FRAME_HEADER.size + length + (-length % 4)
            if cflag in (WHOLE, LAST):
                return _MAGIC_BYTES.join(parts)

    def header(self, key: int) -> IRHeader:
        return unpack_record(self.read(key), where=f"{self.rec_path.name} key {key}")[0]


class IndexedRecordWriter:
    """Writes records and their `key<TAB>offset` index, as mxnet's MXIndexedRecordIO does."""

    def __init__(self, rec_path: Path | str, idx_path: Path | str | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else index_path_for(self.rec_path)
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self._idx = open(self.idx_path, "w", encoding="ascii", newline="\n")  # noqa: SIM115
        self._keys: set[int] = set()

    def write(self, key: int, record: bytes) -> None:
        if key in self._keys:
            raise ValueError(f"key {key} written twice")
        self._keys.add(key)
        offset = self._rec.tell()
        self._rec.write(frame_record(record))
        self._idx.write(f"{int(key)}\t{offset}\n")

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> IndexedRecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def face_record_paths(path: Path | str) -> tuple[Path, Path]:
    """(train.rec, train.idx) for a folder holding them, or for a .rec path."""
    path = Path(path)
    if path.is_dir():
        return path / "train.rec", path / "train.idx"
    return path, index_path_for(path)


def write_face_records(
    out: Path | str,
    samples: Iterable[tuple[bytes, int]],
    *,
    image_size: tuple[int, int] | None = None,
) -> int:
    """Write (image bytes, label) samples in insightface's layout; returns the number of images.

    Images go to keys 1..N grouped by label (ascending, file order kept within one), then one
    identity record per label with its [start, end) key range, and record 0 holding
    (N + 1, N + 1 + identities); `property` gets "num_classes,height,width". Labels must be
    0..C-1 (every label present), as the face sets have them.
    """
    if Path(out).suffix != ".rec":
        Path(out).mkdir(parents=True, exist_ok=True)
    rec_path, idx_path = face_record_paths(out)
    by_label: dict[int, list[bytes]] = {}
    for payload, label in samples:
        by_label.setdefault(int(label), []).append(payload)
    labels = sorted(by_label)
    if labels != list(range(len(labels))):
        raise ValueError(f"labels must be 0..C-1 with every label present, got {labels[:5]}...")
    count = sum(len(v) for v in by_label.values())
    first_identity = count + 1
    with IndexedRecordWriter(rec_path, idx_path) as writer:
        writer.write(0, pack_record([first_identity, first_identity + len(labels)], b""))
        key = 1
        ranges = []
        for label in labels:
            start = key
            for payload in by_label[label]:
                writer.write(key, pack_record(float(label), payload, id=key))
                key += 1
            ranges.append((start, key))
        for label, (start, end) in zip(labels, ranges, strict=True):
            writer.write(first_identity + label, pack_record([start, end], b""))
    height, width = image_size or (112, 112)
    (rec_path.parent / "property").write_text(f"{len(labels)},{height},{width}\n", encoding="ascii")
    return count


def decode_rgb(payload: bytes, *, where: str = "record") -> np.ndarray:
    """JPEG/PNG bytes -> HxWx3 uint8 RGB."""
    image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise RecordIOError(f"{where}: the payload ({len(payload)} bytes) is not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class RecordFaceDataset(Dataset):
    """The images of an insightface .rec: (RGB uint8 HxWx3, int label), or transform(image) first.

    `path`: the folder holding train.rec and train.idx, or the .rec itself.
    """

    def __init__(self, path: Path | str, *, transform: Callable[[np.ndarray], object] | None = None) -> None:
        rec_path, idx_path = face_record_paths(path)
        self.reader = IndexedRecordReader(rec_path, idx_path)
        self.transform = transform
        self.header0: tuple[int, int] | None = None
        first = self.reader.header(0) if 0 in self.reader else None
        if first is not None and first.flag > 0:
            if len(first.labels) < 2:
                raise RecordIOError(f"{rec_path}: record 0 has flag {first.flag} but fewer than two labels")
            self.header0 = (int(first.labels[0]), int(first.labels[1]))
            self.keys = np.arange(1, self.header0[0], dtype=np.int64)
            present = np.fromiter(self.reader.index, dtype=np.int64, count=len(self.reader))
            lacking = np.setdiff1d(self.keys, present)
            if len(lacking):
                raise RecordIOError(
                    f"{rec_path}: record 0 says images are keys 1..{self.header0[0] - 1} but the index "
                    f"lacks {len(lacking)} of them (first: {lacking[:3].tolist()})"
                )
        else:
            self.keys = np.asarray(self.reader.keys, dtype=np.int64)
        self.num_classes = self._num_classes(rec_path.parent / "property")

    def _num_classes(self, property_path: Path) -> int | None:
        if property_path.is_file():
            head = property_path.read_text(encoding="ascii", errors="replace").split(",")[0].strip()
            if head.isdigit():
                return int(head)
        if self.header0 is not None:
            return self.header0[1] - self.header0[0]
        return None  # unknown without reading every header: see labels()

    def __len__(self) -> int:
        return len(self.keys)

    def record(self, index: int) -> tuple[IRHeader, bytes]:
        key = int(self.keys[index])
        return unpack_record(self.reader.read(key), where=f"{self.reader.rec_path.name} key {key}")

    def __getitem__(self, index: int) -> tuple[object, int]:
        header, payload = self.record(index)
        image = decode_rgb(payload, where=f"{self.reader.rec_path.name} key {int(self.keys[index])}")
        label = int(header.first_label)
        return (self.transform(image) if self.transform is not None else image), label

    def labels(self) -> np.ndarray:
        """Every image's label (reads each record: for small sets, checks and tests)."""
        return np.array([int(self.record(i)[0].first_label) for i in range(len(self))], dtype=np.int64)

    def identity_ranges(self) -> Iterator[tuple[int, int, int]]:
        """(label, first key, end key) from the identity records, when record 0 announces them."""
        if self.header0 is None:
            return
        for key in range(self.header0[0], self.header0[1]):
            header = self.reader.header(key)
            yield key - self.header0[0], int(header.labels[0]), int(header.labels[1])


def _check(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    dataset = RecordFaceDataset(args.path)
    labels = set()
    shapes = set()
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    for index in tqdm(range(count), desc="check", unit="img", file=sys.stderr):
        image, label = dataset[index]
        labels.add(label)
        shapes.add(image.shape)
    print(
        f"{count} of {len(dataset)} images read, {len(labels)} labels seen "
        f"(num_classes {dataset.num_classes}, header0 {dataset.header0}), shapes {sorted(shapes)[:4]}"
    )
    return 0


def _convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from inference.decode import load_image
    from toolkit.training.data.folders import ImageFolderDataset

    folder = ImageFolderDataset(args.folder)
    if not folder.samples:
        raise SystemExit(f"no images in identity sub-folders of {args.folder}")

    def payloads() -> Iterator[tuple[bytes, int]]:
        for path, label in tqdm(folder.samples, desc="convert", unit="img", file=sys.stderr):
            yield path.read_bytes(), label

    height, width = load_image(folder.samples[0][0]).shape[:2]
    count = write_face_records(args.out, payloads(), image_size=(height, width))
    print(f"{count} images of {folder.num_classes} identities -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="read and decode every record")
    check.add_argument("path", type=Path, help="folder with train.rec/train.idx, or a .rec")
    check.add_argument("--limit", type=int, default=None)
    convert = commands.add_parser("convert", help="an image folder (one sub-folder per identity) to .rec")
    convert.add_argument("folder", type=Path)
    convert.add_argument("out", type=Path, help="output folder (train.rec, train.idx, property)")
    args = parser.parse_args(argv)
    try:
        return _check(args) if args.command == "check" else _convert(args)
    except RecordIOError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
