"""Tiny random-init LXMERT and VisualBERT models and batches, shared by the tests."""

from __future__ import annotations

import pytest
import torch

from headlens.adapters import adapter_for
from headlens.data.batch import Batch
from headlens.models import load_model
from headlens.pipeline import synthetic_for

FAMILIES = ("lxmert", "visual_bert")


def tiny_adapter(family: str, dtype=torch.float32, seed: int = 0):
    model = load_model(family, None, seed=seed).to(dtype).eval()
    return adapter_for(model)


#: random questions with random boxes for an adapter's model (``labels="model"``: its own answers).
synthetic = synthetic_for


def tiny_batch(adapter, size: int = 6, seed: int = 0, dtype=None, labels: str = "random") -> Batch:
    """A batch whose questions have different lengths (so text is padded) and, for
    VisualBERT, some padded box slots; in the model's precision (``dtype`` is the model's)."""
    return synthetic(adapter, size, seed, labels).collate(range(size))


def hooks_left(model: torch.nn.Module) -> list[str]:
    """Names of submodules that still carry any forward or backward hook."""
    left = []
    for name, module in model.named_modules():
        for attr in ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(module, attr, None):
                left.append(f"{name or '<root>'}.{attr}")
    return left


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param
