"""How well each first-order head score predicts the exact effect of removing that head.

For every example, the Spearman rank correlation ρ between a method's head scores and
``exact`` (the drop of the target logit with the head alone gated off:
:mod:`headlens.scoring.exact`), over all heads of the network; reported as the mean over
examples with its spread, and once more for the global protocol's ranking (both averaged
over the examples first). ρ = 1: the method orders heads exactly as their single-head
ablations do. ``taylor``, ``fisher`` and ``grad_abs`` are non-negative, ``exact`` is signed:
they can at best order heads by how much they matter either way, which shows as ρ below 1
where some ablations raise the logit. An example whose exact drops are all equal (or a
method constant on it) has no ρ and is counted out (``n`` says how many had one).
Generic over adapters: it needs only scoring methods and gates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .adapters import Adapter, adapter_for
from .data.batch import Examples, iterate
from .edits import eval_mode
from .errors import InputError
from .scoring import get_method, score_batch

#: the methods compared with ``exact`` (those with a per-head value from one capture).
FIRST_ORDER = ("grad", "grad_abs", "taylor", "fisher", "lrp", "attnlrp", "entropy")
REFERENCE = "exact"


def average_ranks(values: Tensor) -> Tensor:
    """Ranks ``float64[..., N]`` from 1, ties sharing their mean rank."""
    values = values.double()
    less = (values[..., None, :] < values[..., :, None]).sum(-1)
    equal = (values[..., None, :] == values[..., :, None]).sum(-1)
    return less + (equal + 1) / 2


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's ρ ``float64[...]`` of two ``[..., N]`` tensors along the last axis (NaN where
    either is constant)."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    norm = (ra.square().sum(-1) * rb.square().sum(-1)).sqrt()
    return torch.where(norm > 0, (ra * rb).sum(-1) / norm, torch.full_like(norm, float("nan")))


def correlation_table(
    model: nn.Module | Adapter, data: Examples, methods: Sequence[str] = FIRST_ORDER, batch_size: int = 16,
    rows: int = 256, lrp_dtype: str | None = None, progress: bool = False,
) -> dict:
    """Spearman's ρ of each method with ``exact`` on ``data`` (the model in eval mode).

    Returns ``{"reference": "exact", "n_examples": n, "methods": {method: {"per_example":
    {"mean", "std", "q25", "median", "q75", "n"}, "global": ρ of the mean scores}}}``;
    ``rows``: rows per forward pass of the ablations."""
    adapter = adapter_for(model)
    data = adapter.examples(data)
    if len(data) == 0:
        raise InputError("the correlation table needs at least one example")
    names = list(dict.fromkeys(get_method(m).name for m in methods))
    per_example: dict[str, list[Tensor]] = {m: [] for m in names}
    sums: dict[str, Tensor] = {}
    with eval_mode(adapter.model):
        for _, batch in tqdm(iterate(data, batch_size), desc="correlation", disable=not progress):
            batch = batch.to(adapter.device)
            _, scores = score_batch(adapter, batch.inputs, names + [REFERENCE], ids=batch.ids, lrp_dtype=lrp_dtype,
                                    rows=rows)  # fmt: skip
            flat = {m: value.flatten(1).double().cpu() for m, value in scores.items()}
            for m in names:
                per_example[m].append(spearman(flat[m], flat[REFERENCE]))
            for m, value in flat.items():
                sums[m] = sums.get(m, 0) + value.sum(0)
    table = {}
    for m in names:
        rho = torch.cat(per_example[m]).numpy()
        rho = rho[np.isfinite(rho)]
        summary = {"n": int(rho.size)}
        if rho.size:
            q25, median, q75 = np.quantile(rho, [0.25, 0.5, 0.75])
            summary.update(mean=float(rho.mean()), std=float(rho.std()), q25=float(q25), median=float(median),
                           q75=float(q75))  # fmt: skip
        overall = float(spearman(sums[m], sums[REFERENCE]))
        table[m] = {"per_example": summary, "global": None if np.isnan(overall) else overall}
    return {"reference": REFERENCE, "n_examples": len(data), "methods": table}


def markdown(correlations: dict) -> list[str]:
    """Lines of a Markdown table of :func:`correlation_table`'s result (empty if there is none)."""
    if not correlations:
        return []
    lines = [
        f"Spearman's ρ of each head score with `{correlations['reference']}` (the drop of the target logit with the "
        f"head alone gated off), over all heads, on {correlations['n_examples']} examples: per example (mean ± sd, "
        "and the quartiles) and for the global mean scores.", "",
        "| method | per example: mean ± sd | quartiles | global |", "|---|---|---|---|",
    ]  # fmt: skip
    for method, row in correlations["methods"].items():
        p, g = row["per_example"], row["global"]
        cells = ("–", "–") if not p["n"] else (f"{p['mean']:.2f} ± {p['std']:.2f}",
                                               f"{p['q25']:.2f} / {p['median']:.2f} / {p['q75']:.2f}")  # fmt: skip
        lines.append(f"| {method} | {cells[0]} | {cells[1]} | {'–' if g is None else f'{g:.2f}'} |")
    return lines
