"""How a model family is described: one literal :class:`Family` table per family.

The table says everything headlens needs to know about a family — which HF classes it
covers, where its attention sites are and in which order, how its weights are laid out
per head, which inputs it takes and how dataset fields become them, where its answer
logits come out and which token the classifier reads — and one generic
:class:`~headlens.adapters.adapter.Adapter` reads it. No other code names an attribute
path of a model.

Two ways of finding sites:

* :class:`Stacks` — sites repeated over the layers of named stacks, in a fixed order, with
  module paths as patterns over the layer index (LXMERT, VisualBERT: their attention
  probabilities are the input of an attention-dropout module);
* :class:`ByClass` — every module of the listed attention classes, in model order, one
  site per layer (families written for transformers 5's attention-function registry:
  the probabilities are handed to a registered attention function).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

#: field names datasets use (they know nothing of any model's argument names).
FIELDS = ("input_ids", "attention_mask", "features", "boxes", "box_mask", "pixels")


@dataclass(frozen=True)
class SitePattern:
    """One site per layer of a stack: ``name`` and ``module`` are patterns over ``{i}``."""

    name: str  # e.g. "lang.{i}.self"
    module: str  # path of the module whose forward input is the site's probabilities
    query: str  # stream of the rows: text | image | joint
    key: str  # stream of the columns
    call: int = 0  # which call of a module shared by several sites (LXMERT's cross-attention)


@dataclass(frozen=True)
class Stack:
    """Sites repeated over ``layers`` (a config attribute), each layer giving ``sites`` in order;
    ``skip_last`` layers at the end have none (they cannot reach the classifier)."""

    layers: str
    sites: tuple[SitePattern, ...]
    skip_last: int = 0


@dataclass(frozen=True)
class Stacks:
    """Sites of every stack, stacks in this order (the order defines rankings and masks)."""

    stacks: tuple[Stack, ...]


@dataclass(frozen=True)
class Layout:
    """Where one attention module's per-head weights are, for physical pruning.

    ``module``: path of the module holding the query/key/value projections and the head
    count, relative to the site's ``module`` (``/``-separated; ``..`` climbs one level, ``.``
    is the module itself); ``qkv``: the projections' names in it; ``output``: the projection
    that mixes the heads back, relative to ``module`` the same way."""

    module: str
    qkv: tuple[str, str, str]
    output: str


@dataclass(frozen=True)
class ByClass:
    """One site per module of the given attention classes, in model order, named
    ``name`` over the layer index; both axes in ``stream``. ``layouts`` gives each class's
    weight layout (relative to the attention module itself)."""

    layouts: Mapping[str, Layout]
    name: str = "enc.{i}.self"
    stream: str = "text"


# --- how dataset fields become the model's forward kwargs -------------------------------------
@dataclass(frozen=True)
class Field:
    """The model argument is the dataset field ``name`` (absent: the argument is left out,
    unless ``required``)."""

    name: str
    required: bool = True


@dataclass(frozen=True)
class Zeros:
    """Zeros shaped like the first ``dims`` dimensions of field ``like`` (``long``)."""

    like: str
    dims: int = 2


@dataclass(frozen=True)
class FieldOrOnes:
    """The field ``name`` if the batch has it, else ones like the first two dimensions of ``like``."""

    name: str
    like: str


@dataclass(frozen=True)
class Positions:
    """Position ids counted over the real tokens of the mask field ``mask``: ``cumsum − 1`` (0 on
    padding), so a left-padded example's first real token is position 0, as it is alone."""

    mask: str


InputRule = Field | Zeros | FieldOrOnes | Positions


@dataclass(frozen=True)
class Family:
    """Everything headlens knows about one model family (see the module docstring).

    Attributes:
        name: short family name used in configs and result files.
        model_classes: the model classes it serves, by class name.
        sites: :class:`Stacks` or :class:`ByClass`.
        inputs: model argument → rule making it from dataset fields.
        logits: attribute of the model's output holding the raw answer logits.
        count_rule: how the original counted pruned heads: ``prune_floor`` prunes
            ``int(p·N)``, ``keep_floor`` keeps ``int((1−p)·N)`` (docs/method.md#pruned-counts).
        pooled_stream: the stream whose token the classifier reads.
        pooled_row: which row of it: ``first`` ([CLS]), ``before_final_sep`` (the token before
            the last [SEP], as MMF's and HF's VisualBERT VQA heads read), ``last`` (the last
            real token, as a decoder's next-token logits are read), or ``mean`` (the
            mean over real tokens; also chosen by a model whose ``pooling`` is ``"mean"``).
        text_mask: model argument marking real text tokens (1 = real).
        image: model argument holding the visual tokens ``[batch, slots, …]`` (None: no image stream).
        image_mask: model argument marking real visual slots.
        image_tokens: for an image stream made by the model itself (ViT: [CLS] + patches),
            the number of tokens from the config; None: one per slot of ``image``.
        layout: the per-head weight layout of :class:`Stacks` sites (see :class:`Layout`).
        head_count: attribute names an attention module may hold its head count under, and
            ``head_size_total`` its heads × head size under; physical pruning keeps them true.
        answers: config attribute holding the number of answers.
        feature_dim: config attribute holding the visual feature size (None: no region features).
        max_positions: config attribute holding the text position count.
        position_offset: positions the text cannot use (RoBERTa starts after the padding index).
        schedule: order of the relevance-map updates (docs/method.md#lxmerts-relevance-schedule):
            a function of the config returning steps, each a list of site names updated from
            the same matrices; None: every site alone, in site order.
        original_pictures: file stem of the original's pictures (``{image}``, ``{p}``) and
            whether it also wrote the unmasked image (``<image>_orig.jpg``).
        readout: None (the output's ``logits`` are the answer logits), or
            ``readout(model, inputs, rows) -> [batch, vocabulary]``: the answer logits read at
            ``rows`` (``long[batch]``, the pooled row of each example; decoders).
        kv_heads: config attribute holding the number of key/value heads (grouped-query
            attention); None: every query head has its own.
        window: ``window(module, config) -> int | None``, the sliding window of an attention
            module (keys ``j`` with ``i − w < j ≤ i``); None: no windows.
        causal: query ``i`` sees keys ``j ≤ i`` only; per-head means then divide by the
            (query, key) pairs that exist (:meth:`~headlens.adapters.adapter.Adapter.pair_counts`).
    """

    name: str
    model_classes: tuple[str, ...]
    sites: Stacks | ByClass
    inputs: Mapping[str, InputRule]
    logits: str = "logits"
    count_rule: str = "prune_floor"
    pooled_stream: str = "text"
    pooled_row: str = "first"
    text_mask: str | None = "attention_mask"
    image: str | None = None
    image_mask: str | None = None
    image_tokens: Callable | None = None
    layout: Layout | None = None
    head_count: tuple[str, ...] = ("num_attention_heads", "n_heads")
    head_size_total: tuple[str, ...] = ("all_head_size", "head_size")
    answers: str = "num_labels"
    feature_dim: str | None = None
    max_positions: str | None = "max_position_embeddings"
    position_offset: Callable | None = None
    schedule: Callable | None = None
    original_pictures: tuple[str, bool] = ("{image}_{p}", False)
    readout: Callable | None = None
    kv_heads: str | None = None
    window: Callable | None = None
    causal: bool = False
