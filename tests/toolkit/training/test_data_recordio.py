"""MXNet RecordIO without mxnet: framing, multi-part records, insightface's header0, damaged files."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from toolkit.training.data.recordio import (
    MAGIC,
    IndexedRecordReader,
    IndexedRecordWriter,
    RecordFaceDataset,
    RecordIOError,
    frame_record,
    main,
    pack_record,
    read_index,
    unpack_record,
    write_face_records,
)

MAGIC_BYTES = struct.pack("<I", MAGIC)


def png(seed: int, size: int = 16) -> tuple[bytes, np.ndarray]:
    """A small random RGB image and its PNG bytes (lossless, so it must decode exactly)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes(), rgb


def frame(cflag: int, chunk: bytes) -> bytes:
    """One frame written by hand from the format's description, independently of the writer."""
    return struct.pack("<II", MAGIC, (cflag << 29) | len(chunk)) + chunk + b"\0" * (-len(chunk) % 4)


def frames_of(raw: bytes) -> list[tuple[int, int]]:
    """(cflag, length) of each frame in a .rec's bytes."""
    found, position = [], 0
    while position < len(raw):
        magic, lrecord = struct.unpack_from("<II", raw, position)
        assert magic == MAGIC
        length = lrecord & ((1 << 29) - 1)
        found.append((lrecord >> 29, length))
        position += 8 + length + (-length % 4)
    return found


@pytest.fixture
def face_set(tmp_path: Path) -> tuple[Path, list[tuple[np.ndarray, int]]]:
    counts = (3, 1, 2)
    images = [(label * 10 + i, label) for label, count in enumerate(counts) for i in range(count)]
    samples, expected = [], []
    for seed, label in images:
        data, rgb = png(seed)
        samples.append((data, label))
        expected.append((rgb, label))
    write_face_records(tmp_path / "set", samples, image_size=(16, 16))
    return tmp_path / "set", expected


def test_a_written_face_set_reads_back_with_insightface_header0(face_set):
    folder, expected = face_set
    dataset = RecordFaceDataset(folder)
    assert dataset.header0 == (7, 10)  # images are keys 1..6, identity records 7..9
    assert len(dataset) == 6 and dataset.num_classes == 3
    for (image, label), (rgb, want) in zip((dataset[i] for i in range(6)), expected, strict=True):
        assert label == want and image.dtype == np.uint8
        np.testing.assert_array_equal(image, rgb)  # RGB, not OpenCV's BGR
    assert list(dataset.identity_ranges()) == [(0, 1, 4), (1, 4, 5), (2, 5, 7)]
    assert (folder / "property").read_text().strip() == "3,16,16"


def test_a_record_holding_the_magic_number_is_split_and_reassembled(tmp_path: Path):
    payload = b"abcd" + MAGIC_BYTES + b"efgh" + MAGIC_BYTES + b"xyz"  # magics at aligned positions
    unaligned = b"ab" + MAGIC_BYTES + b"cd"  # not at a multiple of 4: stays in one frame
    with IndexedRecordWriter(tmp_path / "r.rec") as writer:
        writer.write(5, pack_record(2.0, payload))
        writer.write(6, pack_record(3.0, unaligned))
    assert [flag for flag, _ in frames_of((tmp_path / "r.rec").read_bytes())] == [1, 2, 3, 0]
    reader = IndexedRecordReader(tmp_path / "r.rec")
    assert reader.keys == [5, 6]
    header, body = unpack_record(reader.read(5))
    assert (header.flag, header.first_label, body) == (0, 2.0, payload)
    assert unpack_record(reader.read(6))[1] == unaligned


def test_hand_built_multi_part_frames_read_back_with_the_magic_restored(tmp_path: Path):
    record = pack_record([4.0, 9.0], b"")  # flag 2: two float labels, no payload
    parts = [record[:8], record[8:20], record[20:]]  # pretend the writer split twice
    raw = frame(0, b"first") + frame(1, parts[0]) + frame(2, parts[1]) + frame(3, parts[2])
    (tmp_path / "h.rec").write_bytes(raw)
    second = len(frame(0, b"first"))
    (tmp_path / "h.idx").write_text(f"0\t0\n1\t{second}\n")
    reader = IndexedRecordReader(tmp_path / "h.rec")
    assert reader.read(0) == b"first"
    assert reader.read(1) == MAGIC_BYTES.join(parts)
    assert frame_record(b"first") == frame(0, b"first")


def test_without_header0_every_key_is_an_image_and_an_array_label_gives_its_first(tmp_path: Path):
    with IndexedRecordWriter(tmp_path / "train.rec") as writer:
        writer.write(0, pack_record(10.0, png(0)[0]))  # flag 0: record 0 is an image, not header0
        for key in (1, 2):
            writer.write(key, pack_record([float(key + 10), 0.5], png(key)[0]))  # flag 2
    dataset = RecordFaceDataset(tmp_path)
    assert dataset.header0 is None and dataset.num_classes is None
    assert len(dataset) == 3
    assert dataset.labels().tolist() == [10, 11, 12]
    header, _ = dataset.record(1)
    assert header.flag == 2 and header.labels == (11.0, 0.5)


def test_the_dataset_survives_pickling_for_dataloader_workers(face_set):
    folder, expected = face_set
    dataset = RecordFaceDataset(folder)
    _ = dataset[0]  # opens the descriptor in this process
    clone = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(clone[5][0], expected[5][0])


def test_a_truncated_rec_is_refused_with_a_clear_message(face_set):
    folder, _ = face_set
    rec = folder / "train.rec"
    data = rec.read_bytes()
    index = read_index(folder / "train.idx")
    last_key = max(index, key=index.get)
    rec.write_bytes(data[: index[last_key] + 20])  # the last record's frame header survives, not its body
    with pytest.raises(RecordIOError, match=f"key {last_key}: truncated file"):
        IndexedRecordReader(rec).read(last_key)
    rec.write_bytes(data[: index[4] + 30])  # image 4 cut; the index points past the end for 5 onwards
    with pytest.raises(RecordIOError, match="truncated.*beyond.*key 5"):
        RecordFaceDataset(folder)


def test_corrupt_or_missing_files_are_named(face_set, tmp_path: Path):
    folder, _ = face_set
    rec = folder / "train.rec"
    data = bytearray(rec.read_bytes())
    data[0:4] = b"JUNK"  # record 0's magic
    rec.write_bytes(bytes(data))
    with pytest.raises(RecordIOError, match="no RecordIO magic"):
        RecordFaceDataset(folder)
    (tmp_path / "alone.rec").write_bytes(b"")
    with pytest.raises(RecordIOError, match="index file .* not found"):
        IndexedRecordReader(tmp_path / "alone.rec")
    (tmp_path / "alone.idx").write_text("0\tzero\n")
    with pytest.raises(RecordIOError, match="line 1"):
        IndexedRecordReader(tmp_path / "alone.rec")


def test_an_undecodable_payload_is_reported_with_its_key(tmp_path: Path):
    with IndexedRecordWriter(tmp_path / "train.rec") as writer:
        writer.write(0, pack_record(1.0, b"not an image"))
    with pytest.raises(RecordIOError, match="key 0.*not a decodable image"):
        RecordFaceDataset(tmp_path)[0]


def test_an_image_folder_converts_and_checks_from_the_command_line(tmp_path: Path, capsys):
    for name, seeds in (("bob", (1, 2)), ("amy", (3,))):
        (tmp_path / "faces" / name).mkdir(parents=True)
        for seed in seeds:
            (tmp_path / "faces" / name / f"{seed}.png").write_bytes(png(seed)[0])
    assert main(["convert", str(tmp_path / "faces"), str(tmp_path / "rec")]) == 0
    dataset = RecordFaceDataset(tmp_path / "rec")
    assert dataset.labels().tolist() == [0, 1, 1]  # amy = 0, bob = 1: sorted names
    np.testing.assert_array_equal(dataset[0][0], png(3)[1])
    assert main(["check", str(tmp_path / "rec")]) == 0
    assert "3 of 3 images read, 2 labels" in capsys.readouterr().out
    (tmp_path / "rec" / "train.idx").unlink()
    with pytest.raises(SystemExit, match="index file"):
        main(["check", str(tmp_path / "rec")])
