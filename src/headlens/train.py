"""Training and evaluating small answer classifiers (the demo's subjects), on any adapter.

The loss is the cross-entropy against the normalised soft scores of the answers
(for one right answer, ordinary cross-entropy). AdamW, linear warm-up then
cosine decay, gradient clipping.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .adapters import Adapter
from .data.batch import Examples, iterate
from .edits import eval_mode
from .metrics import soft_scores


@dataclass
class FitReport:
    steps: int
    wall_time_s: float
    losses: list[float] = field(default_factory=list)  # mean training loss per logged interval


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    target = labels / labels.sum(-1, keepdim=True).clamp_min(1e-12)
    return -(target * torch.log_softmax(logits, -1)).sum(-1).mean()


def fit(
    adapter: Adapter,
    data: Examples,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-4,
    warmup: float = 0.05,
    weight_decay: float = 0.01,
    clip: float = 1.0,
    seed: int = 0,
    log_every: int = 100,
    progress: bool = True,
) -> FitReport:
    """Train ``adapter.model`` for ``steps`` steps on batches drawn uniformly (seeded) from ``data``."""
    model, data = adapter.model, adapter.examples(data)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup_steps = max(1, int(warmup * steps))

    def schedule(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    generator = torch.Generator().manual_seed(seed)
    report = FitReport(steps, 0.0)
    started, running = time.perf_counter(), []
    bar = tqdm(range(steps), desc=f"train {adapter.family}", disable=not progress)
    for step in bar:
        batch = data.collate(torch.randint(0, len(data), (batch_size,), generator=generator).tolist())
        batch = batch.to(adapter.device)
        loss = soft_cross_entropy(adapter.logits(batch.inputs), batch.labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimiser.step()
        scheduler.step()
        running.append(loss.item())
        if len(running) == log_every or step == steps - 1:
            report.losses.append(sum(running) / len(running))
            bar.set_postfix(loss=f"{report.losses[-1]:.3f}")
            running = []
    model.eval()
    report.wall_time_s = time.perf_counter() - started
    return report


def accuracy_on(adapter: Adapter, data: Examples, batch_size: int = 512, zero_image: bool = False) -> float:
    """VQA accuracy (×100) of the model's argmax answers; ``zero_image`` sets every visual feature to 0."""
    total = 0.0
    with eval_mode(adapter.model), torch.no_grad():
        for _, batch in iterate(data, batch_size):
            if zero_image:
                batch.fields["features"] = torch.zeros_like(batch.fields["features"])
            batch = batch.to(adapter.device)
            inputs = adapter.inputs(batch.fields)
            predictions = adapter.logits(inputs).argmax(-1)
            total += soft_scores(batch.labels, predictions).sum().item()
    return 100.0 * total / len(data)
