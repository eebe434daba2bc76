"""Virtual adversarial training on unlabeled reviews (Miyato, Dai & Goodfellow, ICLR 2017).

Each training step also takes a batch of unlabeled reviews (IMDB's train/unsup or
``--unlabeled``, plus the training reviews without their labels) and trains the
model to predict for them what it predicts now when their embedded words are
moved ``eps`` word vectors (the unit of ``--adversarial-eps``) in the direction
that changes that prediction the most: the loss is the KL divergence from the
clean prediction (held fixed) to the moved one. No label is read, so the
unlabeled reviews teach the classifier too.

The direction is the dominant eigenvector of the prediction's Fisher information
with respect to the embedded words, which the paper approximates by one power
iteration from a random start. With one output (two classes) that matrix is
``p (1 - p) J J^T`` with ``J`` the gradient of the logit, so its eigenvector is
exactly ``J``: one backward pass of the logit gives it, with no finite
difference that bfloat16 would round away. With several outputs it is one power
iteration started in logit space, ``J^T (diag(p) - p p^T) r`` for a random ``r``.
Both passes see the same dropout masks (the random state is replayed), so the
divergence measures the shift alone. A step costs about two passes more.
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from src.data.datasets import collate_batch


class UnlabeledBatches:
    """The unlabeled batch of each training step: ``batch_size`` reviews drawn at random, cut to the length
    of that step's labeled batch so both cost the same (the labeled batches are bucketed by length).

    The draw depends only on ``(seed, epoch, step)``, so a resumed run draws the same batches without any
    state of its own. The ``world_size`` ranks of a distributed run take their shares of one draw of
    ``world_size * batch_size`` reviews: together, the batch one process would draw with the whole batch."""

    def __init__(self, reviews: Sequence[np.ndarray], batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1):
        self.reviews: List[np.ndarray] = [ids for ids in reviews if len(ids)]
        if not self.reviews:
            raise ValueError("virtual adversarial training (--vat-eps) needs unlabeled reviews, and every one "
                             "given is empty; give texts with --unlabeled or use --vat-eps 0")
        if batch_size < 1:
            raise ValueError(f"the unlabeled batch size must be at least 1, not {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of the {world_size} ranks")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size

    def batch(self, epoch: int, step: int, length: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(token_ids [B, T], lengths [B])``, each review cut to its first ``length`` words (T <= length)."""
        rng = np.random.default_rng([self.seed, epoch, step])
        drawn = rng.choice(len(self.reviews), size=min(self.batch_size * self.world_size, len(self.reviews)),
                           replace=False)
        picked = drawn[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        if len(picked) == 0:  # fewer reviews than ranks times the batch: this rank reuses the first ones
            picked = drawn[: self.batch_size]
        token_ids, lengths, _ = collate_batch([(self.reviews[i][:max(length, 1)], 0) for i in picked])
        return token_ids, lengths


def rng_replayer(device: torch.device) -> Callable[[], None]:
    """A function that sets the random state (CPU, and ``device``'s if a GPU) back to what it is now."""
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def replay() -> None:
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)

    return replay


def direction_weights(logits: torch.Tensor) -> torch.Tensor:
    """What to multiply the logits by before the backward pass that gives the direction: ones for one output
    [B] (the gradient of the logit), ``(diag(p) - p p^T) r`` per review for [B, C] (one power iteration)."""
    if logits.dim() == 1:
        return torch.ones_like(logits)
    p = torch.softmax(logits.detach().float(), dim=-1)  # [B, C]
    r = torch.randn_like(p)
    return (p * r - p * (p * r).sum(dim=-1, keepdim=True)).to(logits.dtype)


def prediction_divergence(clean_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence from the clean prediction (no gradient) to ``logits``' [B] (sigmoid) or [B, C]."""
    clean, moved = clean_logits.detach().float(), logits.float()
    if moved.dim() == 1:
        p = torch.sigmoid(clean)
        return (p * (F.logsigmoid(clean) - F.logsigmoid(moved))
                + (1 - p) * (F.logsigmoid(-clean) - F.logsigmoid(-moved))).mean()
    return F.kl_div(F.log_softmax(moved, dim=-1), F.log_softmax(clean, dim=-1), log_target=True,
                    reduction="batchmean")
