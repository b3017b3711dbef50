"""Configs of models headlens builds from scratch (the easy-VQA subjects, tiny test models),
per family, from the few sizes a BERT-style config shares."""

from __future__ import annotations

from torch import nn

from . import family_table

#: layer counts of a model made from scratch, as :func:`make_config`'s ``layers`` takes them.
DEFAULT_LAYERS = {"lxmert": {"language": 2, "cross": 2, "vision": 2}, "visual_bert": {"layers": 4}}
#: layer counts of the tiny random models of smoke runs and tests.
TINY_LAYERS = {"lxmert": {}, "visual_bert": {"layers": 3}}


def make_config(
    family: str, *, vocab_size: int, feature_dim: int, n_answers: int, hidden: int, heads: int, layers: dict,
    intermediate: int, init_range: float, max_len: int = 32, dropout: float = 0.0,
):  # fmt: skip
    """An HF config for a ``family`` model trained from scratch; ``layers`` overrides :data:`DEFAULT_LAYERS`."""
    from transformers import LxmertConfig, VisualBertConfig

    if family not in DEFAULT_LAYERS:
        raise ValueError(f"headlens builds {', '.join(DEFAULT_LAYERS)} models from scratch, not {family!r}")
    unknown = set(layers) - set(DEFAULT_LAYERS[family])
    if unknown:
        raise ValueError(f"{family}: unknown layer keys {sorted(unknown)}; valid: {sorted(DEFAULT_LAYERS[family])}")
    layers = {**DEFAULT_LAYERS[family], **layers}
    common = dict(
        vocab_size=vocab_size, hidden_size=hidden, num_attention_heads=heads, intermediate_size=intermediate,
        max_position_embeddings=max_len, initializer_range=init_range,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )  # fmt: skip
    if family == "lxmert":
        return LxmertConfig(**common, l_layers=layers["language"], x_layers=layers["cross"], r_layers=layers["vision"],
                            visual_feat_dim=feature_dim, visual_pos_dim=4, num_qa_labels=n_answers)  # fmt: skip
    return VisualBertConfig(**common, num_hidden_layers=layers["layers"], visual_embedding_dim=feature_dim,
                            num_labels=n_answers)  # fmt: skip


def tiny_config(family: str):
    """A tiny random-init model's config, for tests and smoke runs. (HF's initializer_range of
    0.02 gives near-uniform attention at this width: pruning would change nothing.)"""
    return make_config(family, vocab_size=40, feature_dim=12, n_answers=7, hidden=16, heads=4,
                       layers=TINY_LAYERS[family], intermediate=32, init_range=0.2)  # fmt: skip


def new_model(family: str, config) -> nn.Module:
    """A randomly initialised model of ``family``'s first HF class (the one :func:`make_config` serves)."""
    import transformers  # (imported by the caller's model code anyway; kept out of this module's import)

    return getattr(transformers, family_table(family).model_classes[0])(config)
