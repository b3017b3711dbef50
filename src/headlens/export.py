"""Physical pruning: a smaller model with the pruned heads' weights removed.

transformers 5 dropped ``prune_heads``; this is headlens' own. For each attention
module, the query/key/value rows and the output projection's columns of the removed
heads go; the module's head count shrinks. Heads are removed per *module*: LXMERT's
cross-attention module serves both directions, so one of its heads can only be removed
when it is pruned in every direction that reaches the output — the *effective* mask
keeps the others, and the exported model computes exactly what the original computes
under that mask (a mask without shared modules is its own effective mask). A module
losing every head keeps one with zeroed value weights, so its output is the projection's
bias, as gating all heads gives.

An exported folder is HF format plus ``headlens_pruned_heads`` in ``config.json``
(module path → removed heads); :func:`headlens.models.load_model` rebuilds the shapes
before loading the weights. headlens analyses full models only: an exported model is for
inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from .adapters import Adapter, adapter_for

CONFIG_KEY = "headlens_pruned_heads"


def attention_modules(adapter: Adapter) -> dict[str, list[int]]:
    """Attention module path → indices of the sites it serves."""
    modules: dict[str, list[int]] = {}
    for index, site in enumerate(adapter.sites):
        modules.setdefault(adapter.attention_module(site), []).append(index)
    return modules


def effective_mask(adapter: Adapter, keep: Tensor) -> Tensor:
    """``keep`` ``[sites, heads]`` with a head kept at every site of its module if any site keeps it."""
    effective = keep.clone().bool()
    for sites in attention_modules(adapter).values():
        kept = effective[sites].any(0)
        effective[sites] = kept
    return effective.to(keep.dtype)


def removed_heads(adapter: Adapter, keep: Tensor) -> dict[str, list[int]]:
    """Module path → heads to remove under ``keep`` (only heads no site of the module keeps)."""
    keep = effective_mask(adapter, keep)
    return {
        path: [h for h in range(adapter.num_heads) if not bool(keep[sites[0], h])]
        for path, sites in attention_modules(adapter).items()
    }


def prune_module(model: nn.Module, attention_path: str, output_path: str, heads: list[int]) -> None:
    """Remove ``heads`` from one attention module (in place)."""
    attention = model.get_submodule(attention_path)
    total, size = attention.num_attention_heads, attention.attention_head_size
    kept = [h for h in range(total) if h not in set(heads)]
    silence = not kept  # every head goes: keep head 0 with a zero value projection
    if silence:
        kept = [0]
    rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in kept])
    for name in ("query", "key", "value"):
        setattr(attention, name, _select(getattr(attention, name), rows, dim=0))
    if silence:
        with torch.no_grad():
            attention.value.weight.zero_()
            attention.value.bias.zero_()
    parent_path, _, dense_name = output_path.rpartition(".")
    parent = model.get_submodule(parent_path)
    setattr(parent, dense_name, _select(getattr(parent, dense_name), rows, dim=1))
    attention.num_attention_heads = len(kept)
    for attribute in ("head_size", "all_head_size"):  # LXMERT and BERT-style names of heads × size
        if hasattr(attention, attribute):
            setattr(attention, attribute, len(kept) * size)


def _select(linear: nn.Linear, index: Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.index_select(dim, index.to(linear.weight.device)).detach().clone()
    out_features, in_features = weight.shape
    has_bias = linear.bias is not None
    new = nn.Linear(in_features, out_features, bias=has_bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if has_bias:
            new.bias.copy_(linear.bias if dim == 1 else linear.bias.index_select(0, index.to(weight.device)))
    return new


def prune_heads(model: nn.Module, removed: dict[str, list[int]], adapter: Adapter | None = None) -> nn.Module:
    """Remove the heads ``removed`` names (module path → heads) from ``model``, in place; record them in its config."""
    adapter = adapter or adapter_for(model)
    outputs = {adapter.attention_module(site): adapter.output_projection(site) for site in adapter.sites}
    for path, heads in removed.items():
        if heads:
            prune_module(model, path, outputs[path], heads)
    setattr(model.config, CONFIG_KEY, {path: heads for path, heads in removed.items() if heads})
    return model


def export(model: nn.Module, keep: Tensor, out_dir: str | Path, progress: bool = True) -> dict:
    """Write a copy of ``model`` without the heads ``keep`` (``[sites, heads]``, 1 = kept)
    prunes to ``out_dir``. Returns a report: heads asked for, removed, kept by sharing."""
    import copy

    adapter = adapter_for(model)
    effective = effective_mask(adapter, keep)
    removed = removed_heads(adapter, keep)
    pruned = prune_heads(copy.deepcopy(model), removed, adapter)
    out = Path(out_dir)
    from .models import hf_progress_bars

    with hf_progress_bars(progress):
        pruned.save_pretrained(out)
    report = {
        "heads": adapter.num_sites * adapter.num_heads,
        "pruned_asked": int((keep == 0).sum()),
        "pruned_effective": int((effective == 0).sum()),
        "removed_per_module": {path: len(heads) for path, heads in removed.items()},
        "parameters_before": sum(p.numel() for p in model.parameters()),
        "parameters_after": sum(p.numel() for p in pruned.parameters()),
    }
    (out / "headlens_export.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
