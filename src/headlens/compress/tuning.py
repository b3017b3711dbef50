"""Least-squares mask tuning of the kept heads (Kwon et al. 2022, §4.3), and folding the
tuned gates into the output projections.

After pruning, each kept head's gate becomes a real-valued scale, solved site by site in
model order so that the pruned site's output matches the unpruned model's on the
calibration examples. With ``c_h`` head ``h``'s contribution to the output projection
(``W_o[:, h] · ctx_h``) in the *pruned* model (earlier sites already pruned and tuned), the
site's output is ``Σ_h m_h c_h + b_o + r`` — linear in the gates — and the target is the
unpruned model's ``W_o ctx + b_o + r'`` at the same token, ``r`` and ``r'`` the residuals the
two models carry in. The scales solve ``min_m Σ_tokens ‖Σ_h m_h c_h − (t − b_o − r)‖²`` over
real tokens (padding left out), through its normal equations accumulated in float64.

The residual is the one BERT-style layouts add inside the output module (the output
projection's parent, when it is not the attention module itself, takes ``(context,
residual)`` and normalises their sum: BERT, RoBERTa, MiniLM, VisualBERT, LXMERT); where the
residual is added outside it (ViT, DistilBERT) the target is the attention output alone.
A site whose solution is not finite or leaves ``[-BOUND, BOUND]`` keeps its 0/1 gates (as
Kwon et al. do, who stop tuning there). A module serving two sites (LXMERT's
cross-attention) cannot take two sets of scales in one projection: tuning refuses it.

Gating head ``h``'s probabilities by ``m_h`` scales its context ``ctx_h`` by ``m_h``, so
:func:`fold_scales` multiplies the output projection's columns of head ``h`` by ``m_h``:
the folded model with all gates 1 computes what the gated model computes.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from ..adapters import Adapter, adapter_for
from ..data.batch import Examples, iterate
from ..edits import eval_mode, gates
from ..edits.handles import editing
from ..errors import InputError

#: scales beyond ±BOUND are taken for an ill-posed site, which then keeps its 0/1 gates.
BOUND = 10.0


def solve_scales(gram: Tensor, rhs: Tensor) -> Tensor:
    """The least-squares ``m`` of ``min ‖A m − y‖²`` from ``gram = AᵀA`` ``[k, k]`` and
    ``rhs = Aᵀy`` ``[k]`` (float64; the minimum-norm one when ``AᵀA`` is singular)."""
    return torch.linalg.lstsq(gram.double(), rhs.double()[:, None], driver="gelsd").solution[:, 0]


def shared_modules(adapter: Adapter) -> list[str]:
    """Attention modules that serve more than one site."""
    modules = [adapter.weights_of(site).module for site in adapter.sites]
    return sorted({m for m in modules if modules.count(m) > 1})


class _Reached(Exception):
    """Raised by :func:`tap_outputs` with ``stop=True`` once its last site is recorded."""


@contextmanager
def tap_outputs(adapter: Adapter, sites, stop: bool = False) -> Iterator[dict]:
    """For the block, record at each site in ``sites`` the output projection's input
    (``(index, "context")``: ``[batch, n, heads · size]``) and, for BERT-style layouts, the
    residual the output module adds (``(index, "residual")``: ``[batch, n, hidden]``), each
    forward overwriting the last. ``stop``: end the forward once the last of ``sites`` is
    recorded (the rest of the model is not needed; the block swallows the stop). Hooks
    removed on exit."""
    found: dict = {}
    last = max(sites)
    with editing() as edits:
        for index in sites:
            weights = adapter.weights_of(adapter.sites[index])
            dense = adapter.model.get_submodule(weights.output)

            def context(module, args, index=index):
                found[index, "context"] = args[0].detach()
                if stop and index == last:
                    raise _Reached

            edits.hook(dense.register_forward_pre_hook(context))
            parent = weights.output.rpartition(".")[0]
            if parent != weights.module:

                def residual(module, args, kwargs, index=index):
                    value = args[1] if len(args) > 1 else kwargs.get("input_tensor")
                    if isinstance(value, Tensor):
                        found[index, "residual"] = value.detach()

                edits.hook(adapter.model.get_submodule(parent).register_forward_pre_hook(residual, with_kwargs=True))
        try:
            yield found
        except _Reached:
            pass


def _rows(adapter: Adapter, index: int, inputs, tensor: Tensor) -> Tensor:
    """``tensor`` ``[batch, n, d]`` at the site's real query positions, ``float64[rows, d]``."""
    mask = adapter.streams(inputs)[adapter.sites[index].query].mask
    if tuple(mask.shape) != tuple(tensor.shape[:2]):
        raise RuntimeError(f"{adapter.sites[index].name}: output of {list(tensor.shape)} for a stream of {list(mask.shape)}")
    return tensor[mask.to(tensor.device)].double()


def _output(dense: nn.Linear, found: dict, index: int) -> Tensor:
    out = dense(found[index, "context"])
    residual = found.get((index, "residual"))
    return out if residual is None else out + residual


@dataclass
class Tuning:
    """What :func:`tune_scales` solved.

    Attributes:
        scales: ``float64[sites, heads]``, 0 at pruned heads, the least-squares scales at kept ones.
        offsets: ``float64[sites, hidden]`` added to each output projection's bias (``offsets=True``),
            or None.
        untuned: names of the sites left at 0/1 gates (solution out of bounds or not finite).
    """

    scales: Tensor
    offsets: Tensor | None
    untuned: list[str]


def tune_scales(
    adapter: Adapter, examples: Examples, keep: Tensor, batch_size: int = 32, bound: float = BOUND,
    offsets: bool = False,
) -> Tuning:  # fmt: skip
    """Solve the kept heads' scales site by site (see the module text); with ``offsets``, also
    a free offset per hidden unit of the site's output — the least-squares bias correction,
    which takes in, among others, the mean output of the pruned heads — solved jointly with
    the scales (an extension: Kwon et al. fit an offset but drop it).

    One forward of the unpruned model over ``examples`` for the targets, then, per site in
    order, one forward (up to the site) of a working copy of the pruned model, the sites
    before it already tuned (folded as :func:`fold_scales` folds them)."""
    shared = shared_modules(adapter)
    if shared:
        raise InputError(f"mask tuning needs one site per attention module; shared by several sites: {', '.join(shared)} "
                         "(export with --no-tune, i.e. export.tune=false)")  # fmt: skip
    sites = range(adapter.num_sites)
    batches = [(len(batch), batch.to(adapter.device).inputs) for _, batch in iterate(examples, batch_size)]
    scales, skipped = keep.double().cpu().clone(), []
    hidden = _dense(adapter, 0).weight.shape[0]
    shifts = torch.zeros(adapter.num_sites, hidden, dtype=torch.float64)
    work = adapter_for(copy.deepcopy(adapter.model))
    with eval_mode(adapter.model), eval_mode(work.model), torch.no_grad():
        targets = []
        with tap_outputs(adapter, sites) as found:
            for _, inputs in batches:
                adapter.logits(inputs)
                targets.append([_rows(adapter, s, inputs, _output(_dense(adapter, s), found, s)) for s in sites])
        for s in sites:
            kept = keep[s].nonzero()[:, 0].cpu()
            if not len(kept) and not offsets:
                continue
            dense = _dense(adapter, s)
            weight = dense.weight.detach().double().cpu()  # [hidden, heads · size]
            per_head = weight.view(weight.shape[0], adapter.num_heads, -1)[:, kept]  # [hidden, k, size]
            bias = 0.0 if dense.bias is None else dense.bias.detach().double().cpu()
            sums = _Sums(len(kept), hidden)
            for (size, inputs), target in zip(batches, targets):
                with gates(work, keep.to(adapter.device).expand(size, -1, -1)), tap_outputs(work, [s], stop=True) as student:
                    work.logits(inputs)
                context = _rows(work, s, inputs, student[s, "context"]).cpu()
                context = context.view(context.shape[0], adapter.num_heads, -1)[:, kept]  # [rows, k, size]
                columns = torch.einsum("rkd,okd->rko", context, per_head)  # each kept head's contribution
                residual = student.get((s, "residual"))
                residual = 0.0 if residual is None else _rows(work, s, inputs, residual).cpu()
                sums.add(columns, target[s].cpu() - bias - residual)  # [rows, hidden] wanted
            solution, shift = sums.solve(offsets)
            if torch.isfinite(solution).all() and (not len(kept) or solution.abs().max() <= bound):
                scales[s, kept] = solution
                shifts[s] = shift
                _fold_site(work, s, scales[s], shifts[s])
            else:
                skipped.append(adapter.sites[s].name)
    return Tuning(scales, shifts if offsets else None, skipped)


class _Sums:
    """Running sums of one site's least-squares problem over batches of rows (float64)."""

    def __init__(self, k: int, hidden: int):
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
        self.gram, self.rhs, self.column_sum, self.wanted_sum, self.rows = zeros(k, k), zeros(k), zeros(k, hidden), zeros(hidden), 0

    def add(self, columns: Tensor, wanted: Tensor) -> None:
        """``columns`` ``[rows, k, hidden]`` (each head's contribution), ``wanted`` ``[rows, hidden]``."""
        self.gram += torch.einsum("rko,rjo->kj", columns, columns)
        self.rhs += torch.einsum("rko,ro->k", columns, wanted)
        self.column_sum += columns.sum(0)
        self.wanted_sum += wanted.sum(0)
        self.rows += wanted.shape[0]

    def solve(self, offsets: bool) -> tuple[Tensor, Tensor]:
        """``(scales [k], offset [hidden])``; the offset is 0 unless ``offsets``. With a free
        offset the problem is the centred one (means over rows removed), the offset the mean residual."""
        gram, rhs = self.gram, self.rhs
        if not offsets:
            return solve_scales(gram, rhs), torch.zeros_like(self.wanted_sum)
        column_mean, wanted_mean = self.column_sum / self.rows, self.wanted_sum / self.rows
        if not len(rhs):
            return rhs, wanted_mean
        scales = solve_scales(gram - self.rows * column_mean @ column_mean.T, rhs - self.rows * column_mean @ wanted_mean)
        return scales, wanted_mean - scales @ column_mean


def _dense(adapter: Adapter, index: int) -> nn.Linear:
    return adapter.model.get_submodule(adapter.weights_of(adapter.sites[index]).output)


def fold_scales(adapter: Adapter, scales: Tensor, offsets: Tensor | None = None) -> None:
    """Multiply each output projection's columns of head ``h`` at site ``s`` by ``scales[s, h]``
    and add ``offsets[s]`` (if given) to its bias (in place; one site per module). Pruned heads
    (scale 0) are then removed by export."""
    shared = shared_modules(adapter)
    if shared:
        raise InputError(f"cannot fold per-site scales into modules that serve several sites: {', '.join(shared)}")
    for s in range(adapter.num_sites):
        _fold_site(adapter, s, scales[s], None if offsets is None else offsets[s])


def _fold_site(adapter: Adapter, index: int, scales: Tensor, offset: Tensor | None) -> None:
    dense = _dense(adapter, index)
    with torch.no_grad():
        factor = scales.to(dtype=dense.weight.dtype, device=dense.weight.device)
        dense.weight.mul_(factor.repeat_interleave(dense.weight.shape[1] // adapter.num_heads)[None, :])
        if offset is not None and bool(offset.ne(0).any()):
            if dense.bias is None:
                raise InputError(f"{adapter.sites[index].name}: its output projection has no bias to take the offset")
            dense.bias.add_(offset.to(dtype=dense.bias.dtype, device=dense.bias.device))
