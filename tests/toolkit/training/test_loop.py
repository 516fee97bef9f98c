"""The training loop: it learns, it resumes exactly, it runs under DDP, it keeps the best model."""

import csv
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tests.toolkit.training.helpers import lfw_faces, random_faces, shared_lfw_available, tiny_backbone
from toolkit.metrics import auc
from toolkit.training.augment import MaskAugment
from toolkit.training.backbones import create_backbone
from toolkit.training.config import TrainConfig
from toolkit.training.dataset import FaceArrays, TrainingSet, VerificationPairs
from toolkit.training.distributed import Context, init_distributed, shutdown
from toolkit.training.loop import Trainer
from toolkit.training.losses import cosface
from toolkit.training.partial_fc import PartialFC
from toolkit.training.validation import embed

CPU = Context(0, 1, 0, torch.device("cpu"))


def trainer_for(backbone, faces, config, *, val=None, context=CPU, classes=None):
    head = PartialFC(
        cosface(s=16, m=0.1), backbone.dim, classes or faces.num_classes, sample_rate=config.sample_rate
    )
    policy = MaskAugment(config.p_synthetic, config.p_cutout, config.p_flip)
    return Trainer(config, context, backbone, head, TrainingSet(faces, policy, np.zeros(3), config.seed), val)


def losses(out):
    with (out / "metrics.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
@pytest.mark.skipif(not shared_lfw_available(), reason="needs ../shared/data/lfw")
def test_training_on_lfw_identities_lowers_the_loss_and_helps_verification_of_unseen_ones(tmp_path):
    # 50 identities to train on, 12 never seen, 20 photos each.
    chips, labels = lfw_faces(identities=62, per_identity=20)
    train, held = labels < 50, labels >= 50
    faces = FaceArrays(chips[train], None, labels[train], np.tile([22, 32], (int(train.sum()), 1)))
    config = TrainConfig(
        batch_size=32,
        epochs=25,
        lr=0.05,
        weight_decay=5e-4,
        p_flip=0.5,
        warmup_steps=4,
        validate_every=1000,
        checkpoint_every=1000,
        out=str(tmp_path),
    )
    backbone = tiny_backbone(seed=0)
    i, j = np.triu_indices(int(held.sum()), 1)
    same = labels[held][i] == labels[held][j]

    def held_out_auc():
        vectors = embed(backbone, chips[held], torch.device("cpu"))
        return auc(np.sum(vectors[i] * vectors[j], axis=1), same)

    untrained = held_out_auc()
    trainer_for(backbone, faces, config).run()
    trained = held_out_auc()
    history = losses(tmp_path)
    assert np.mean(history[-4:]) < 0.8 * np.mean(history[:4])
    assert trained > untrained + 0.08, (untrained, trained)


@pytest.mark.slow
def test_resuming_from_a_checkpoint_gives_the_identical_next_step(tmp_path):
    faces = random_faces(24, 6, size=112)
    config = TrainConfig(
        backbone="iresnet18",
        batch_size=4,
        max_steps=3,
        epochs=1,
        lr=0.05,
        sample_rate=0.5,
        p_synthetic=0.3,
        p_cutout=0.3,
        checkpoint_every=2,
        validate_every=1000,
    )

    def fresh(out):
        torch.manual_seed(0)
        return trainer_for(
            create_backbone("iresnet18"), faces, TrainConfig(**{**config.to_dict(), "out": str(out)})
        )

    fresh(tmp_path / "straight").run()
    interrupted = fresh(tmp_path / "resumed")
    step = interrupted.train_step

    def killed_after_step_two(batch):
        if interrupted.step == 2:
            raise KeyboardInterrupt  # as if the process were killed after the checkpoint of step 2
        return step(batch)

    interrupted.train_step = killed_after_step_two
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    resumed = fresh(tmp_path / "resumed")
    resumed.resume()
    assert resumed.step == 2
    resumed.run()
    assert losses(tmp_path / "resumed")[2] == losses(tmp_path / "straight")[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out: str, result: dict) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    context = init_distributed("cpu")
    try:
        backbone = tiny_backbone(seed=0, batch_norm=False)
        trainer = trainer_for(backbone, random_faces(32, 8), _ddp_config(out), context=context)
        trainer.head.init_centres(
            torch.nn.functional.normalize(torch.randn(8, 32, generator=torch.Generator().manual_seed(1)))
        )
        trainer.run()
        result[rank] = {k: v.detach().clone() for k, v in backbone.module.state_dict().items()}
    finally:
        shutdown()


def _ddp_config(out: str) -> TrainConfig:
    return TrainConfig(
        batch_size=4,
        max_steps=3,
        epochs=1,
        lr=0.1,
        p_flip=0.0,
        checkpoint_every=1000,
        validate_every=1000,
        out=out,
    )


@pytest.mark.slow
def test_two_gloo_processes_train_the_same_model_as_one_process_on_the_joint_batch(tmp_path):
    port = _free_port()
    with mp.Manager() as manager:
        result = manager.dict()
        mp.spawn(_ddp_worker, args=(port, str(tmp_path / "ddp"), result), nprocs=2, join=True)
        ranks = {rank: dict(state) for rank, state in result.items()}
    config = TrainConfig(**{**_ddp_config(str(tmp_path / "one")).to_dict(), "batch_size": 8})
    backbone = tiny_backbone(seed=0, batch_norm=False)
    single = trainer_for(backbone, random_faces(32, 8), config)
    single.head.init_centres(
        torch.nn.functional.normalize(torch.randn(8, 32, generator=torch.Generator().manual_seed(1)))
    )
    single.run()
    for name, value in backbone.module.state_dict().items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name])
        torch.testing.assert_close(ranks[0][name], value, atol=1e-5, rtol=1e-4)


def test_the_best_checkpoint_is_chosen_on_held_out_verification(tmp_path):
    faces = random_faces(32, 4)
    first, second = np.arange(8), np.array([8, 9, 11, 10, 12, 13, 15, 14])
    ids = faces.labels
    val = VerificationPairs(
        faces.clean[first],
        faces.clean[second],
        faces.masked[second, 0],
        ids[first] == ids[second],
        ids[first],
        ids[second],
    )
    config = TrainConfig(
        batch_size=8, max_steps=4, lr=0.1, validate_every=2, checkpoint_every=2, out=str(tmp_path)
    )
    trainer = trainer_for(tiny_backbone(), faces, config, val=val)
    trainer.run()
    with (tmp_path / "validation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["validation"]["score"] == max(float(r["score"]) for r in rows)
    # The default selects on the all-pairs TAR at FAR 1e-3, unmasked and masked alike.
    tars = [
        (float(r["unmasked_tar_at_far_1e-3_all"]) + float(r["masked_tar_at_far_1e-3_all"])) / 2 for r in rows
    ]
    assert [float(r["score"]) for r in rows] == pytest.approx(tars, abs=1e-6)
