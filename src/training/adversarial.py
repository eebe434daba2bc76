"""Adversarial training on the word vectors (Miyato, Dai & Goodfellow, ICLR 2017).

Each training step also trains on the reviews with their embedded words moved a
small step in the direction that raises the loss the most: with ``g`` the
gradient of the loss with respect to a review's embedded words [T, E], the
perturbation is ``eps * unit * g / ||g||``, its L2 norm taken over the whole
review. The loss trained on is the clean loss plus the perturbed one, so a step
costs about two.

``unit`` is the root-mean-square norm of the embedding's word vectors at that
step, so ``--adversarial-eps`` is measured in word vectors and means the same for
GloVe 50d vectors and a 300-d embedding learned from scratch, and the model cannot
shrink the perturbation by growing its vectors (the role that normalising the
embeddings plays in the paper; its eps of 5 on 256-d unit-variance vectors is
about 0.3 word vectors).
"""

from __future__ import annotations

import torch
from torch import nn

from src.utils.device import cpu_computes_in_bfloat16


def word_vector_rms(embedding: nn.Embedding) -> torch.Tensor:
    """Root-mean-square L2 norm of the word vectors (a scalar, no gradient)."""
    weight = embedding.weight.detach().float()  # [V, E]
    return weight.pow(2).sum(dim=1).mean().sqrt()


def adversarial_perturbation(gradient: torch.Tensor, norm: torch.Tensor | float) -> torch.Tensor:
    """[B, T, E] gradient of the loss w.r.t. the embedded reviews -> a perturbation of L2 norm ``norm``
    per review along it (zero for a review whose gradient is zero)."""
    gradient = gradient.detach().float()
    lengths = gradient.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)  # [B, 1, 1]
    return gradient * (norm / lengths)


def default_adversarial_eps(device: torch.device, precision: str) -> float:
    """``--adversarial-eps``'s default where none is given: 1 (+1.2-1.5 points for the defaults on IMDB)
    where a step is cheap enough to take twice, on a GPU or a CPU that trains in bfloat16; 0 on a CPU in
    float32, where it would stretch the defaults' hour to about three."""
    return 1.0 if device.type != "cpu" or cpu_computes_in_bfloat16(precision) else 0.0
