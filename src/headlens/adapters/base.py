"""What every model adapter provides.

An adapter is the only place that knows a model family's attribute paths and
input names. Everything else (hooks, scoring, pruning, plotting) talks to the
model through this interface:

* :attr:`Adapter.sites` — the attention sites in their canonical order;
* :meth:`Adapter.logits` — run the model on a dict of forward kwargs;
* :meth:`Adapter.streams` — which token positions are real, per example;
* :meth:`Adapter.pooled_row` — the row whose output the classifier reads;
* :attr:`Adapter.count_rule` — how the original counted pruned heads (SPEC §4).

Subclasses are mostly declarative: they list their sites and input keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch
from torch import Tensor, nn

from ..sites import Site

Inputs = Mapping[str, Tensor]


@dataclass(frozen=True)
class AttentionWeights:
    """The weights one attention module's heads own.

    Attributes:
        module: path of the module holding the projections (and the head-count attribute).
        qkv: names, inside ``module``, of its query, key and value ``nn.Linear``.
        output: full path of the ``nn.Linear`` that mixes the heads back into the hidden size.
    """

    module: str
    qkv: tuple[str, str, str]
    output: str


@dataclass(frozen=True)
class Stream:
    """Token positions of one stream of a batch.

    Attributes:
        mask: ``bool[batch, n]``, True at real (non-padding) positions.
        count: ``float[batch]``, how many positions the per-head means of SPEC §3
            divide by: real text tokens, and *every* visual slot of the input tensor
            (the original's VisualBERT mean included padded box slots; its data padded
            every image to the same number of slots, so this count is a property of
            the example, never of the batch it sits in).
    """

    mask: Tensor
    count: Tensor


class Adapter:
    """Base class of the model adapters. See the module docstring."""

    #: short family name used in configs and result files.
    family: ClassVar[str]
    #: HF model classes this adapter serves (by class name, so importing is lazy).
    model_classes: ClassVar[tuple[str, ...]]
    #: SPEC §4: ``"prune_floor"`` prunes ``int(p·N)``; ``"keep_floor"`` keeps ``int((1−p)·N)``.
    count_rule: ClassVar[str] = "prune_floor"
    #: stream whose token the classifier reads (see :meth:`pooled_row`).
    pooled_stream: ClassVar[str] = "text"
    #: class names of submodules whose relevance passes through whole in LRP (see relevance.lrp).
    lrp_pass_modules: ClassVar[tuple[str, ...]] = ()
    #: forward kwarg holding the text attention mask (1 = real token).
    text_mask_key: ClassVar[str] = "attention_mask"
    #: forward kwarg holding the visual features ``[batch, boxes, dim]`` (None: text-only model).
    image_key: ClassVar[str | None] = None
    #: forward kwarg holding the visual attention mask, if the model takes one.
    image_mask_key: ClassVar[str | None] = None

    def __init__(self, model: nn.Module):
        self.model = model
        self.sites: tuple[Site, ...] = tuple(self.sites_of(model))
        heads = {site.heads for site in self.sites}
        if len(heads) != 1:
            raise ValueError(f"{self.family}: sites with different head counts {sorted(heads)} are not supported")
        self.num_heads: int = heads.pop()
        for site in self.sites:  # fail at construction, not mid-run, on a wrong path
            model.get_submodule(site.module)

    # --- declared by each family -------------------------------------------------
    @classmethod
    def build_sites(cls, config) -> list[Site]:
        """The sites of a model with this config, in canonical order."""
        raise NotImplementedError

    def sites_of(self, model: nn.Module) -> list[Site]:
        """The sites of this model (by default from its config alone)."""
        return self.build_sites(model.config)

    def logits(self, inputs: Inputs) -> Tensor:
        """Raw answer logits ``[batch, n_answers]`` (before any sigmoid/softmax)."""
        raise NotImplementedError

    def pooled_row(self, inputs: Inputs) -> Tensor | None:
        """``long[batch]``: position, in the stream the classifier reads, of the pooled token;
        None when the classifier reads the mean of the real positions."""
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        """Size of one visual feature vector the model takes."""
        raise NotImplementedError

    @property
    def max_text_tokens(self) -> int | None:
        """The longest token sequence the model's text position embeddings cover (None: unknown)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def num_answers(self) -> int:
        """How many answers (classes) the classifier scores."""
        return self.model.config.num_labels

    def attention_weights(self, site: Site) -> AttentionWeights:
        """Where ``site``'s projections live (for physical pruning). By default the BERT
        layout that LXMERT and VisualBERT share: the probability module's parent holds
        ``query``/``key``/``value``, and ``output.dense`` beside that parent mixes the heads back."""
        module = site.module.rsplit(".", 1)[0]
        return AttentionWeights(module, ("query", "key", "value"), module.rsplit(".", 1)[0] + ".output.dense")

    def relevance_schedule(self) -> list[list[str]]:
        """Order of the relevancy-map updates (SPEC §8): a list of steps, each a list of site
        names whose updates are computed from the same matrices and then added. Default: every
        site alone, in site order (a single-stream encoder)."""
        return [[name] for name in self.site_names]

    def vqa_inputs(
        self, input_ids: Tensor, attention_mask: Tensor, features: Tensor, boxes: Tensor, box_mask: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The model's forward kwargs for a VQA batch.

        ``input_ids``/``attention_mask`` ``[batch, T]`` (``[CLS] question [SEP]``, padded),
        ``features`` ``[batch, boxes, dim]``, ``boxes`` ``[batch, boxes, 4]`` normalised
        ``(x1, y1, x2, y2)``, ``box_mask`` ``[batch, boxes]`` (1 = real box; None = all real).
        """
        raise NotImplementedError

    #: layer counts (family-specific keys) of a model made from scratch, and of a tiny test model.
    default_layers: ClassVar[dict[str, int]] = {}
    tiny_layers: ClassVar[dict[str, int]] = {}

    @classmethod
    def make_config(
        cls, *, vocab_size: int, feature_dim: int, n_answers: int, hidden: int, heads: int, layers: dict,
        intermediate: int, init_range: float, max_len: int = 32, dropout: float = 0.0,
    ):  # fmt: skip
        """An HF config for a model trained from scratch; ``layers`` overrides :attr:`default_layers`."""
        unknown = set(layers) - set(cls.default_layers)
        if unknown:
            raise ValueError(f"{cls.family}: unknown layer keys {sorted(unknown)}; valid: {sorted(cls.default_layers)}")
        common = dict(
            vocab_size=vocab_size, hidden_size=hidden, num_attention_heads=heads, intermediate_size=intermediate,
            max_position_embeddings=max_len, initializer_range=init_range,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        )  # fmt: skip
        return cls._family_config(common, {**cls.default_layers, **layers}, feature_dim, n_answers)

    @classmethod
    def _family_config(cls, common: dict, layers: dict, feature_dim: int, n_answers: int):
        """The family's HF config from the keys every BERT-style config shares."""
        raise NotImplementedError

    @classmethod
    def tiny_config(cls):
        """A tiny random-init model's config, for tests and smoke runs. (HF's initializer_range
        of 0.02 gives near-uniform attention at this width: pruning would change nothing.)"""
        return cls.make_config(
            vocab_size=40, feature_dim=12, n_answers=7, hidden=16, heads=4, layers=cls.tiny_layers, intermediate=32,
            init_range=0.2,
        )

    # --- shared --------------------------------------------------------------------
    @property
    def site_names(self) -> list[str]:
        return [site.name for site in self.sites]

    @property
    def num_sites(self) -> int:
        return len(self.sites)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def streams(self, inputs: Inputs) -> dict[str, Stream]:
        """Real positions and mean denominators of every stream of a batch."""
        ids = inputs.get("input_ids")
        batch, length = ids.shape if ids is not None else inputs["inputs_embeds"].shape[:2]
        device = self.device
        text_mask = inputs.get(self.text_mask_key)
        text_mask = (
            torch.ones(batch, length, dtype=torch.bool, device=device) if text_mask is None else text_mask.bool()
        )
        streams = {"text": Stream(text_mask, text_mask.sum(-1).to(torch.float32))}
        if self.image_key is not None:
            slots = inputs[self.image_key].shape[1]
            image_mask = inputs.get(self.image_mask_key) if self.image_mask_key else None
            image_mask = (
                torch.ones(batch, slots, dtype=torch.bool, device=device) if image_mask is None else image_mask.bool()
            )
            streams["image"] = Stream(image_mask, torch.full((batch,), float(slots), device=device))
            streams["joint"] = Stream(
                torch.cat([text_mask, image_mask], dim=1), streams["text"].count + streams["image"].count
            )
        return streams

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.num_sites} sites × {self.num_heads} heads>"


