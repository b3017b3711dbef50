"""The one generic adapter: a model and its family's table, read for everything else.

Everything above this layer (model edits, scoring, pruning, evaluation, sweeps, reports)
talks to a model only through an :class:`Adapter`:

* :attr:`Adapter.sites` — the attention sites in their canonical order;
* :meth:`Adapter.inputs` — the model's forward kwargs from a dataset's fields;
* :meth:`Adapter.logits` / :meth:`Adapter.predict` — answer logits and predicted answers;
* :meth:`Adapter.streams` — which token positions are real, per example;
* :meth:`Adapter.pooled_row` — the row whose output the classifier reads;
* :meth:`Adapter.weights_of` — where a site's per-head weights are (physical pruning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..sites import Site, site_name
from .family import ByClass, Family, Field, FieldOrOnes, Layout, Positions, Stacks, Zeros

Inputs = Mapping[str, Tensor]


@dataclass(frozen=True)
class Stream:
    """Token positions of one stream of a batch.

    Attributes:
        mask: ``bool[batch, n]``, True at real (non-padding) positions.
        count: ``float[batch]``, how many positions the per-head means divide by: real text
            tokens, and *every* visual slot of the input tensor (the original's VisualBERT mean
            included padded box slots; its data padded every image to the same number of slots,
            so this count is a property of the example, never of the batch it sits in;
            docs/method.md#head-scores).
    """

    mask: Tensor
    count: Tensor


@dataclass(frozen=True)
class AttentionWeights:
    """The weights one attention module's heads own (absolute paths in the model).

    Attributes:
        module: path of the module holding the projections (and the head-count attribute).
        qkv: names, inside ``module``, of its query, key and value ``nn.Linear``.
        output: full path of the ``nn.Linear`` that mixes the heads back into the hidden size.
    """

    module: str
    qkv: tuple[str, str, str]
    output: str


def relative_path(base: str, relative: str) -> str:
    """``relative`` (``/``-separated, ``..`` climbs a level, ``.`` stays) resolved from the module path ``base``."""
    parts = base.split(".")
    for segment in relative.split("/"):
        if segment == "..":
            parts.pop()
        elif segment not in (".", ""):
            parts += segment.split(".")
    return ".".join(parts)


def sites_of(family: Family, config, model: nn.Module | None = None) -> list[Site]:
    """The sites of a model of ``family`` (:class:`Stacks`: from its config alone;
    :class:`ByClass`: found on ``model``), in canonical order."""
    heads = config.num_attention_heads  # DistilBERT's config maps it to n_heads
    spec = family.sites
    if isinstance(spec, Stacks):
        sites = []
        for stack in spec.stacks:
            for i in range(getattr(config, stack.layers) - stack.skip_last):
                sites += [Site(site_name(*pattern.name.format(i=i).split(".")), pattern.module.format(i=i), pattern.call,
                               pattern.query, pattern.key, heads) for pattern in stack.sites]  # fmt: skip
        return sites
    if model is None:
        raise TypeError(f"{family.name}: sites are found on a model, not a config")
    found = [name for name, module in model.named_modules() if type(module).__name__ in spec.layouts]
    if not found:
        raise TypeError(f"{type(model).__name__}: no attention module of the classes {', '.join(spec.layouts)}")
    return [Site(site_name(*spec.name.format(i=i).split(".")), path, 0, spec.stream, spec.stream, heads,
                 via="attention_function") for i, path in enumerate(found)]  # fmt: skip


class Adapter:
    """A model with its family's table (see the module docstring).

    ``exclude_answers``: answer indices never predicted (MMF's metric leaves ``<unk>``, answer
    0, out); the scoring target is never one of them either. ``classes``: for a model whose
    answers are a vocabulary (a decoder), the token ids that are the classes, in class order
    (prompt classification: class ``c`` is the logit of token ``classes[c]``); None: every
    answer is a class.
    """

    def __init__(self, model: nn.Module, family: Family, exclude_answers: Sequence[int] = (),
                 classes: Sequence[int] | None = None):  # fmt: skip
        self.model, self.family_table = model, family
        self.exclude_answers = tuple(int(a) for a in exclude_answers)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        if self.classes is not None:
            vocabulary = getattr(model.config, family.answers)
            if not self.classes or any(not 0 <= c < vocabulary for c in self.classes):
                raise InputError(f"{family.name}: class token ids must be a non-empty list in [0, {vocabulary}), "
                                 f"got {list(self.classes)}")  # fmt: skip
        self.sites: tuple[Site, ...] = tuple(sites_of(family, model.config, model))
        heads = {site.heads for site in self.sites}
        if len(heads) != 1:
            raise ValueError(f"{family.name}: sites with different head counts {sorted(heads)} are not supported")
        self.num_heads: int = heads.pop()
        for site in self.sites:  # fail at construction, not mid-run, on a wrong path
            model.get_submodule(site.module)

    # --- what the table says ---------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.family_table.name

    @property
    def count_rule(self) -> str:
        return self.family_table.count_rule

    @property
    def pooled_stream(self) -> str:
        return self.family_table.pooled_stream

    @property
    def image_key(self) -> str | None:
        """The forward kwarg holding the visual tokens (None: a text-only model)."""
        return self.family_table.image

    @property
    def text_mask_key(self) -> str | None:
        """The forward kwarg marking real text tokens (None: an image-only model)."""
        return self.family_table.text_mask

    @property
    def site_names(self) -> list[str]:
        return [site.name for site in self.sites]

    @property
    def num_sites(self) -> int:
        return len(self.sites)

    @property
    def num_answers(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return getattr(self.model.config, self.family_table.answers)

    @property
    def kv_heads(self) -> int:
        """Key/value heads per site (grouped-query attention: fewer than :attr:`num_heads`; query
        head ``h`` reads key/value head ``h // (num_heads // kv_heads)``)."""
        attribute = self.family_table.kv_heads
        found = getattr(self.model.config, attribute, None) if attribute else None
        return self.num_heads if found is None else int(found)

    @property
    def class_names(self) -> list[str] | None:
        """The model's answer names, if its config has real ones (not HF's ``LABEL_0``, ``LABEL_1``, …)."""
        id2label = getattr(self.model.config, "id2label", None) or {}
        names = [id2label[i] for i in sorted(id2label)]
        return None if all(name == f"LABEL_{i}" for i, name in enumerate(names)) else names

    def expect_answers(self, count: int, where: str) -> None:
        """An answer list (of ``count`` answers, read from ``where``) must be the model's."""
        if count != self.num_answers:
            raise InputError(f"{where}: the answer list has {count} answers but the model predicts {self.num_answers}: "
                             "the answer list of another model?")  # fmt: skip

    @property
    def feature_dim(self) -> int | None:
        """Size of one visual feature vector the model takes (None: it takes no region features)."""
        attribute = self.family_table.feature_dim
        return None if attribute is None else getattr(self.model.config, attribute)

    @property
    def max_text_tokens(self) -> int | None:
        """The longest token sequence the model's text position embeddings cover (None: unknown)."""
        table, config = self.family_table, self.model.config
        positions = getattr(config, table.max_positions, None) if table.max_positions else None
        if positions is None:
            return None
        return positions - (table.position_offset(config) if table.position_offset else 0)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # --- running the model -----------------------------------------------------------------
    def inputs(self, fields: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The model's forward kwargs from a batch's fields (on the model's device; floating
        fields in the model's precision)."""
        device, dtype = self.device, self.dtype
        made = {}
        for argument, rule in self.family_table.inputs.items():
            if isinstance(rule, Field):
                if rule.name not in fields:
                    if rule.required:
                        raise InputError(f"{self.family} needs the field {rule.name!r}; the batch has {sorted(fields)}")
                    continue
                value = fields[rule.name]
            elif isinstance(rule, Zeros):
                value = torch.zeros(fields[rule.like].shape[: rule.dims], dtype=torch.long)
            elif isinstance(rule, FieldOrOnes):
                value = fields.get(rule.name)
                if value is None:
                    value = torch.ones(fields[rule.like].shape[:2], dtype=torch.long)
            elif isinstance(rule, Positions):
                value = (fields[rule.mask].long().cumsum(-1) - 1).clamp_min(0)
            else:  # pragma: no cover - the tables use only the rules above
                raise TypeError(f"unknown input rule {rule!r}")
            value = value.to(device)
            made[argument] = value.to(dtype) if value.is_floating_point() else value
        return made

    def token_ids(self, inputs: Inputs) -> Tensor | None:
        """``long[batch, T]``: the text tokens of a batch's inputs (None for a model without text)."""
        for argument, rule in self.family_table.inputs.items():
            if isinstance(rule, Field) and rule.name == "input_ids":
                return inputs.get(argument)
        return None

    def logits(self, inputs: Inputs) -> Tensor:
        """Raw answer logits ``[batch, n_answers]`` (before any sigmoid/softmax); a decoder's are
        its next-token logits at the last real token, over :attr:`classes` if given."""
        readout = self.family_table.readout
        if readout is None:
            return getattr(self.model(**inputs), self.family_table.logits)
        logits = readout(self.model, inputs, self.pooled_row(inputs))
        return logits if self.classes is None else logits[:, list(self.classes)]

    def predict(self, logits: Tensor) -> Tensor:
        """The predicted answers ``long[...]``: the argmax over the last axis, never an excluded answer."""
        if self.exclude_answers:
            index = torch.as_tensor(self.exclude_answers, device=logits.device)
            logits = logits.index_fill(-1, index, float("-inf"))
        return logits.argmax(-1)

    def examples(self, data) -> "ModelExamples":
        """``data`` (any dataset: ``__len__`` and ``collate(indices) -> Batch`` of fields) as batches
        whose ``inputs`` are this model's forward kwargs."""
        return data if isinstance(data, ModelExamples) and data.adapter is self else ModelExamples(data, self)

    # --- token positions -------------------------------------------------------------------
    def streams(self, inputs: Inputs) -> dict[str, Stream]:
        """Real positions and mean denominators of every stream of a batch."""
        table = self.family_table
        device = self.device
        first = next(iter(inputs.values()))
        streams = {}
        if table.text_mask is not None:
            ids = inputs.get("input_ids")
            batch, length = ids.shape if ids is not None else inputs["inputs_embeds"].shape[:2]
            text_mask = inputs.get(table.text_mask)
            text_mask = (torch.ones(batch, length, dtype=torch.bool, device=device)
                         if text_mask is None else text_mask.bool())  # fmt: skip
            streams["text"] = Stream(text_mask, text_mask.sum(-1).to(torch.float32))
        if table.image is not None:
            batch = inputs[table.image].shape[0]
            slots = table.image_tokens(self.model.config) if table.image_tokens else inputs[table.image].shape[1]
            image_mask = inputs.get(table.image_mask) if table.image_mask else None
            image_mask = (torch.ones(batch, slots, dtype=torch.bool, device=first.device)
                          if image_mask is None else image_mask.bool())  # fmt: skip
            streams["image"] = Stream(image_mask, torch.full((batch,), float(slots), device=image_mask.device))
            if "text" in streams:
                streams["joint"] = Stream(torch.cat([streams["text"].mask, image_mask], dim=1),
                                          streams["text"].count + streams["image"].count)  # fmt: skip
        return streams

    def pooled_row(self, inputs: Inputs) -> Tensor | None:
        """``long[batch]``: position, in the pooled stream, of the token the classifier reads;
        None when the classifier reads the mean of the real positions."""
        rule = "mean" if getattr(self.model, "pooling", None) == "mean" else self.family_table.pooled_row
        if rule == "mean":
            return None
        table = self.family_table
        if rule == "before_final_sep":
            return inputs[table.text_mask].sum(-1).long() - 2
        if rule == "last":  # the last real position, whichever side the padding is on
            mask = inputs[table.text_mask]
            return (mask.long() * torch.arange(1, mask.shape[1] + 1, device=mask.device)).argmax(-1)
        first = inputs[table.image if table.pooled_stream == "image" else "input_ids"]
        return torch.zeros(first.shape[0], dtype=torch.long, device=first.device)

    def pair_counts(self, inputs: Inputs, streams: Mapping[str, Stream] | None = None) -> list[Tensor]:
        """Per site, ``float[batch]``: how many (query, key) pairs of the site's map exist, the
        per-head means' denominator. Without a causal mask, real queries × real keys
        (:class:`Stream`'s counts); under it, the pairs the mask lets through among ``n`` real
        tokens: ``n(n+1)/2``, or ``Σ_i min(i+1, w)`` under a sliding window ``w`` — the same
        whatever padding or batch an example is given."""
        streams = self.streams(inputs) if streams is None else streams
        if not self.family_table.causal:
            return [streams[site.query].count * streams[site.key].count for site in self.sites]
        n = streams["text"].count
        counts = []
        for window in self.windows:
            if window is None or window <= 0:
                counts.append(n * (n + 1) / 2)
            else:  # rows 0…w−1 see i+1 keys, the rest w
                full = torch.clamp(n - window, min=0)
                ramp = torch.minimum(n, torch.tensor(float(window), device=n.device))
                counts.append(ramp * (ramp + 1) / 2 + full * window)
        return counts

    @property
    def windows(self) -> list[int | None]:
        """Per site, its sliding window (None: every earlier key)."""
        window = self.family_table.window
        if window is None:
            return [None] * self.num_sites
        return [window(self.model.get_submodule(site.module), self.model.config) for site in self.sites]

    # --- structure ---------------------------------------------------------------------------
    def weights_of(self, site: Site) -> AttentionWeights:
        """Where ``site``'s projections live (for physical pruning)."""
        spec = self.family_table.sites
        if isinstance(spec, ByClass):
            layout: Layout = spec.layouts[type(self.model.get_submodule(site.module)).__name__]
        else:
            layout = self.family_table.layout
        module = relative_path(site.module, layout.module)
        return AttentionWeights(module, layout.qkv, relative_path(module, layout.output))

    def relevance_schedule(self) -> list[list[str]]:
        """Order of the relevancy-map updates (docs/method.md#lxmerts-relevance-schedule): steps,
        each a list of site names whose updates are computed from the same matrices and then
        added. Default: every site alone, in site order (a single-stream encoder)."""
        if self.family_table.schedule is None:
            return [[name] for name in self.site_names]
        return self.family_table.schedule(self.model.config)

    def __repr__(self) -> str:
        return f"<{self.family} adapter: {self.num_sites} sites × {self.num_heads} heads>"


class ModelExamples:
    """A dataset's examples as batches for one model: each batch's fields become the model's
    forward kwargs (:meth:`Adapter.inputs`). Anything else (``describe``, the dataset's own
    attributes) is the dataset's."""

    def __init__(self, base, adapter: Adapter):
        self.base, self.adapter = base, adapter

    def __len__(self) -> int:
        return len(self.base)

    def collate(self, indices: Sequence[int]):
        batch = self.base.collate(indices)
        if batch.inputs is None:
            batch.inputs = self.adapter.inputs(batch.fields)
        return batch

    def __getattr__(self, name: str):
        if name in ("base", "adapter"):  # not set yet (unpickling): avoid recursing
            raise AttributeError(name)
        return getattr(self.base, name)
