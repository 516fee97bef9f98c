"""From the config's data to what the loop consumes: training faces with labels 0..C-1 over the
training identities only, and verification pairs over identities held out by name.

- `pack`: a face pack (`toolkit.training.data.prepare`), plus optional unlabelled packs whose
  faces train the distillation term only;
- `recordio` (MS1M, Glint360K: train.rec + train.idx) and `folder` (one folder per identity):
  aligned crops read as they go, Cutout only (synthetic masks need the mesh: prepare a pack).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.training.augment import template_cut_rows
from toolkit.training.backbones import Backbone
from toolkit.training.config import TrainConfig
from toolkit.training.data.folders import ImageFolderDataset
from toolkit.training.data.pack import FacePack, load_pack
from toolkit.training.data.recordio import RecordFaceDataset
from toolkit.training.data.splits import split_identities, verification_pairs
from toolkit.training.dataset import FaceArrays, StreamSource, VerificationPairs, concatenate

# Held-out pairs on streamed data are read into memory: at most this many.
MAX_STREAM_PAIRS = 2000


@dataclass
class TrainingData:
    train: FaceArrays | StreamSource
    validation: VerificationPairs | None
    num_classes: int
    identities: int  # held-out identities behind the validation pairs


def _relabel(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Labels of the kept classes renumbered 0..C-1 (in their order); others -1."""
    table = np.full(int(labels.max()) + 1 if labels.size else 0, -1, dtype=np.int64)
    table[keep] = np.arange(len(keep))
    return np.where(labels >= 0, table[np.maximum(labels, 0)], -1)


def _check_template(pack: FacePack, backbone: Backbone, source: str) -> None:
    if pack.template != backbone.input.template.name:
        raise SystemExit(
            f"{source} holds {pack.template} chips, {backbone.name} takes {backbone.input.template.name}: "
            "prepare the pack for this backbone (--embedder)"
        )


def _pack_data(config: TrainConfig, backbone: Backbone) -> TrainingData:
    pack = load_pack(config.data)
    _check_template(pack, backbone, config.data)
    names = [str(n) for n in pack.names]
    split = split_identities(names, config.val_fraction, config.split_seed)
    held = {names.index(n) for n in split.validation}
    val_rows = np.nonzero(np.isin(pack.labels, list(held)))[0]
    train_rows = np.nonzero(~np.isin(pack.labels, list(held)))[0]
    train_classes = np.array(sorted(set(range(len(names))) - held), dtype=np.int64)
    parts = [
        FaceArrays(
            pack.chips[train_rows],
            pack.masked[train_rows],
            _relabel(pack.labels[train_rows], train_classes),
            pack.mask_rows[train_rows].astype(np.int64),
        )
    ]
    for path in filter(None, config.unlabelled.split(",")):
        extra = load_pack(path)
        _check_template(extra, backbone, path)
        parts.append(
            FaceArrays(extra.chips, extra.masked, np.full(len(extra), -1), extra.mask_rows.astype(np.int64))
        )
    validation = None
    if len(val_rows) and config.val_pairs:
        rows = verification_pairs(
            pack.labels[val_rows].tolist(), genuine=config.val_pairs, seed=config.split_seed
        )
        first, second = val_rows[rows[:, 0]], val_rows[rows[:, 1]]
        validation = VerificationPairs(
            pack.chips[first],
            pack.chips[second],
            pack.masked[second, 0],
            rows[:, 2] == 1,
            pack.labels[first],
            pack.labels[second],
        )
    return TrainingData(concatenate(parts), validation, len(train_classes), len(held))


def _labels(dataset: RecordFaceDataset | ImageFolderDataset) -> np.ndarray:
    if isinstance(dataset, ImageFolderDataset):
        return dataset.labels
    if dataset.header0 is None:
        return dataset.labels()  # reads every record's header
    # MS1M-style files announce each identity's key range: no need to read millions of records.
    labels = np.full(len(dataset), -1, dtype=np.int64)
    for label, start, end in dataset.identity_ranges():
        labels[start - 1 : end - 1] = label  # image keys start at 1
    return labels


def _stream_data(config: TrainConfig, backbone: Backbone) -> TrainingData:
    dataset = (
        RecordFaceDataset(config.data) if config.data_kind == "recordio" else ImageFolderDataset(config.data)
    )
    labels = _labels(dataset)
    label_names = [str(label) for label in range(int(labels.max()) + 1)]
    split = split_identities(label_names, config.val_fraction, config.split_seed)
    held = np.array(sorted(int(n) for n in split.validation), dtype=np.int64)
    train_classes = np.setdiff1d(np.arange(len(label_names)), held)
    is_val = np.isin(labels, held)
    template = backbone.input.template
    train = StreamSource(
        dataset,
        np.nonzero(~is_val)[0],
        _relabel(labels[~is_val], train_classes),
        template.size,
        template_cut_rows(template),
    )
    validation = None
    val_index = np.nonzero(is_val)[0]
    if len(val_index) and config.val_pairs:
        rows = verification_pairs(
            labels[val_index].tolist(),
            genuine=min(config.val_pairs, MAX_STREAM_PAIRS // 2),
            seed=config.split_seed,
        )
        source = StreamSource(
            dataset, val_index, labels[val_index], template.size, template_cut_rows(template)
        )
        first = np.stack([source.image(i) for i in rows[:, 0]])
        second = np.stack([source.image(i) for i in rows[:, 1]])
        top, bottom = template_cut_rows(template)
        # No mesh for streamed crops: the masked probe is the Cutout the runtime would match.
        second_masked = second.copy()
        second_masked[:, top:bottom] = 0
        held_labels = labels[val_index]
        validation = VerificationPairs(
            first, second, second_masked, rows[:, 2] == 1, held_labels[rows[:, 0]], held_labels[rows[:, 1]]
        )
    return TrainingData(train, validation, len(train_classes), len(held))


def load_training_data(config: TrainConfig, backbone: Backbone) -> TrainingData:
    if not config.data:
        raise SystemExit("no training data: set `data` in the config or --set data=PATH")
    if config.data_kind == "pack":
        return _pack_data(config, backbone)
    return _stream_data(config, backbone)
