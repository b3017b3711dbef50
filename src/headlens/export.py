"""Physical pruning: a smaller model with the pruned heads' weights removed.

transformers 5 dropped ``prune_heads``; this is headlens' own. For each attention
module, the query/key/value rows and the output projection's columns of the removed
heads go; the module's head count shrinks. Heads are removed per *module*: LXMERT's
cross-attention module serves both directions, so one of its heads can only be removed
when it is pruned in every direction that reaches the output — the *effective* mask
keeps the others, and the exported model computes exactly what the original computes
under that mask (a mask without shared modules is its own effective mask). A module
losing every head keeps one with zeroed value weights, so its output is the projection's
bias, as gating all heads gives. Decoders (grouped key/value heads, GPT-2's fused projection)
are cut by :mod:`headlens.export_decoders`.

An exported folder holds the HF ``config.json`` with ``headlens_pruned_heads`` added (module
path → removed heads) and ``model.safetensors`` under the model's own parameter names
(``save_pretrained`` would rename some families' keys to their legacy checkpoint names,
which only ``from_pretrained`` maps back — and it cannot build the smaller shapes);
:func:`headlens.models.load_model` rebuilds the shapes, then loads the weights. headlens
analyses full models only: an exported model is for inference.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import save_model
from torch import Tensor, nn

from .adapters import Adapter, AttentionWeights, adapter_for
from .files import atomic_folder

CONFIG_KEY = "headlens_pruned_heads"
WEIGHTS_FILE = "model.safetensors"


def attention_modules(adapter: Adapter) -> dict[str, list[int]]:
    """Attention module path → indices of the sites it serves."""
    modules: dict[str, list[int]] = {}
    for index, site in enumerate(adapter.sites):
        modules.setdefault(adapter.weights_of(site).module, []).append(index)
    return modules


def effective_mask(adapter: Adapter, keep: Tensor) -> Tensor:
    """``keep`` ``[sites, heads]`` with a head kept at every site of its module if any site keeps it."""
    effective = keep.clone().bool()
    for sites in attention_modules(adapter).values():
        kept = effective[sites].any(0)
        effective[sites] = kept
    return effective.to(keep.dtype)


def removed_heads(adapter: Adapter, effective: Tensor) -> dict[str, list[int]]:
    """Module path → heads to remove under an effective mask (see :func:`effective_mask`)."""
    return {
        path: [h for h in range(adapter.num_heads) if not bool(effective[sites[0], h])]
        for path, sites in attention_modules(adapter).items()
    }


def prune_module(adapter: Adapter, weights: AttentionWeights, heads: list[int]) -> None:
    """Remove ``heads`` from one attention module of ``adapter``'s model (in place). The module's
    head-count attributes (the family table's ``head_count``/``head_size_total``) are kept true;
    the forwards reshape with -1 heads, so these only keep the module's description right."""
    table, model = adapter.family_table, adapter.model
    attention = model.get_submodule(weights.module)
    query, key, value = (getattr(attention, name) for name in weights.qkv)
    total = next(getattr(attention, a) for a in table.head_count if hasattr(attention, a))
    size = query.out_features // total
    removed = set(heads)
    kept = [h for h in range(total) if h not in removed]
    silence = not kept  # every head goes: keep head 0 with a zero value projection
    if silence:
        kept = [0]
    rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in kept])
    for name, linear in zip(weights.qkv, (query, key, value)):
        setattr(attention, name, _select(linear, rows, dim=0))
    if silence:
        value = getattr(attention, weights.qkv[2])
        with torch.no_grad():
            value.weight.zero_()
            if value.bias is not None:
                value.bias.zero_()
    parent_path, _, dense_name = weights.output.rpartition(".")
    parent = model.get_submodule(parent_path)
    setattr(parent, dense_name, _select(getattr(parent, dense_name), rows, dim=1))
    for attribute in table.head_count:
        if hasattr(attention, attribute):
            setattr(attention, attribute, len(kept))
    for attribute in table.head_size_total:
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
    adapter = adapter if adapter is not None and adapter.model is model else adapter_for(model)
    layouts = {weights.module: weights for weights in map(adapter.weights_of, adapter.sites)}
    for path, heads in removed.items():
        if heads and adapter.family_table.causal:  # grouped key/value heads, GPT-2's fused projection
            from .export_decoders import prune_decoder_module

            prune_decoder_module(adapter, layouts[path], heads, _select)
        elif heads:
            prune_module(adapter, layouts[path], heads)
    setattr(model.config, CONFIG_KEY, {path: heads for path, heads in removed.items() if heads})
    return model


def export(model: nn.Module | Adapter, keep: Tensor, out_dir: str | Path) -> dict:
    """Write a copy of ``model`` without the heads ``keep`` (``[sites, heads]``, 1 = kept)
    prunes to ``out_dir``. Returns a report: heads asked for, removed, kept by sharing."""

    adapter = adapter_for(model)
    model = adapter.model
    effective = effective_mask(adapter, keep)
    removed = removed_heads(adapter, effective)
    pruned = prune_heads(copy.deepcopy(model), removed, adapter)
    pruned.config.architectures = [type(pruned).__name__]
    report = {
        "heads": adapter.num_sites * adapter.num_heads,
        "pruned_asked": int((keep == 0).sum()),
        "pruned_effective": int((effective == 0).sum()),
        "removed_per_module": {path: len(heads) for path, heads in removed.items()},
        "parameters_before": sum(p.numel() for p in model.parameters()),
        "parameters_after": sum(p.numel() for p in pruned.parameters()),
    }
    with atomic_folder(out_dir) as out:  # a folder that exists holds a whole model
        pruned.config.save_pretrained(out)
        save_model(pruned, str(out / WEIGHTS_FILE))
        (out / "headlens_export.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
