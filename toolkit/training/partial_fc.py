"""Partial FC (arcface_torch's PartialFC_V2): the class centres, sharded over ranks, a sampled
fraction of them scored per step, and a softmax cross-entropy computed across the shards.

With 360k identities the full centre matrix (and its logits) no longer fits one GPU: each rank
holds num_classes / world_size centres, gathers every rank's embeddings and labels, scores a
sample of its own centres (every positive of the global batch plus random negatives up to
`sample_rate`) and the softmax's max, normaliser and target logit are all-reduced. On one
process it is a plain (sampled) margin softmax.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn

from toolkit.training.losses import CombinedMargin


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) forward; backward passes the gradient through unchanged: every rank
    back-propagates the same global loss, so each rank's share of the sum gets dL/dsum once."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _ScaleGradient(torch.autograd.Function):
    """Identity forward, gradient times `factor` backward. The gathered embeddings' gradient is
    the true one of the global loss; DistributedDataParallel then averages the backbone's
    gradients over the ranks, which this undoes (arcface_torch's AllGather does the same)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


class PartialFC(nn.Module):
    def __init__(
        self,
        margin: CombinedMargin,
        embedding_size: int,
        num_classes: int,
        *,
        sample_rate: float = 1.0,
        label_smoothing: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise ValueError("sample_rate must lie in (0, 1]")
        if not 0 <= label_smoothing < 1:
            raise ValueError("label_smoothing must lie in [0, 1)")
        self.rank = dist.get_rank() if _distributed() else 0
        self.world_size = dist.get_world_size() if _distributed() else 1
        self.num_classes = num_classes
        self.num_local = num_classes // self.world_size + int(self.rank < num_classes % self.world_size)
        self.class_start = num_classes // self.world_size * self.rank + min(
            self.rank, num_classes % self.world_size
        )
        self.num_sample = max(1, int(round(sample_rate * self.num_local)))
        self.sample_rate = sample_rate
        self.margin = margin
        self.label_smoothing = label_smoothing
        self.weight = nn.Parameter(torch.normal(0, 0.01, (self.num_local, embedding_size)))
        # Negatives are drawn from this generator (its state is checkpointed: exact resume).
        self.generator = torch.Generator().manual_seed(seed * 1000 + self.rank)

    @torch.no_grad()
    def init_centres(self, centres: torch.Tensor) -> None:
        """Start from given class centres (num_classes x dim, e.g. the teacher's mean embedding
        per identity): a pretrained backbone then starts from a sensible head."""
        self.weight.copy_(centres[self.class_start : self.class_start + self.num_local])

    def _sample(self, local_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices of the scored centres, each row's target position among them or -1)."""
        if self.num_sample >= self.num_local:
            return torch.arange(self.num_local, device=local_labels.device), local_labels
        positive = torch.unique(local_labels[local_labels >= 0])
        score = torch.rand(self.num_local, generator=self.generator).to(local_labels.device)
        score[positive] = 2.0  # every positive is scored
        count = max(self.num_sample, positive.numel())
        index = torch.topk(score, k=count)[1].sort()[0]
        position = torch.full((self.num_local,), -1, dtype=torch.long, device=local_labels.device)
        position[index] = torch.arange(count, device=local_labels.device)
        target = torch.where(local_labels >= 0, position[local_labels.clamp(min=0)], local_labels)
        return index, target

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean margin-softmax loss over the global batch's labelled rows (embeddings: this
        rank's rows; label -1: no class)."""
        labels = labels.view(-1).long()
        if self.world_size > 1:
            embeddings = torch.cat(
                dist_nn.all_gather(_ScaleGradient.apply(embeddings, float(self.world_size)))
            )
            gathered = [torch.zeros_like(labels) for _ in range(self.world_size)]
            dist.all_gather(gathered, labels)
            labels = torch.cat(gathered)
        # Faces without a class (distillation only) take no part in the softmax: scored with no
        # target, the loss would push them away from every centre, into one region of their own.
        labelled = labels >= 0
        if not bool(labelled.all()):
            embeddings, labels = embeddings[labelled], labels[labelled]
            if labels.numel() == 0:
                return embeddings.sum() * 0.0
        in_shard = (labels >= self.class_start) & (labels < self.class_start + self.num_local)
        local_labels = torch.where(in_shard, labels - self.class_start, torch.full_like(labels, -1))
        index, target = self._sample(local_labels)
        weight = self.weight[index]
        cosine = F.linear(F.normalize(embeddings.float()), F.normalize(weight.float())).clamp(-1, 1)
        logits = self.margin(cosine, target)
        return self._cross_entropy(logits, target)

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # The softmax runs over every rank's sampled centres: max, normaliser and the target's
        # logit are reduced across ranks (the max only for stability: no gradient through it).
        row_max = logits.detach().max(dim=1).values
        if self.world_size > 1:
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX)
        shifted = logits - row_max[:, None]
        sum_exp = shifted.exp().sum(dim=1)
        has_target = target >= 0
        target_logit = torch.where(
            has_target, shifted.gather(1, target.clamp(min=0)[:, None]).squeeze(1), torch.zeros_like(row_max)
        )
        sum_logits = shifted.sum(dim=1)
        count = torch.full_like(row_max, float(shifted.shape[1]))
        if self.world_size > 1:
            sum_exp = _SumAcrossRanks.apply(sum_exp)
            target_logit = _SumAcrossRanks.apply(target_logit)
            sum_logits = _SumAcrossRanks.apply(sum_logits)
            count = _SumAcrossRanks.apply(count)
        log_norm = torch.log(sum_exp)
        loss = log_norm - target_logit
        if self.label_smoothing:
            # Smoothing spreads epsilon over the scored classes: -mean_j log p_j.
            uniform = log_norm - sum_logits / count
            loss = (1 - self.label_smoothing) * loss + self.label_smoothing * uniform
        return loss.mean()

    def extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
