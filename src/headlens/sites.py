"""Attention sites and their names.

A *site* is one call of one attention module: it produces a probability tensor
``A`` of shape ``[batch, heads, n_query, n_key]`` (post-softmax, pre-dropout).
A module called twice per forward pass (LXMERT's shared cross-attention, once
per direction) gives two sites.

Every site has one name of the form ``"{stack}.{layer}.{kind}"``, e.g.
``lang.3.self``, ``x.2.l2v``, ``vis.1.self``, ``enc.0.self``. The layer is always
field 2 (0-based). Names are built and parsed only here; heat-map labels and
result files use the same strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^(?P<stack>[a-z][a-z0-9_]*)\.(?P<layer>\d+)\.(?P<kind>[a-z][a-z0-9_]*)$")

#: Token streams a site's queries and keys can come from. ``joint`` is the
#: concatenation ``text ⊕ image`` of a single-stream model (VisualBERT).
STREAMS = ("text", "image", "joint")
#: the ways a site's probabilities are reached (see :class:`Site`).
VIAS = ("module_input", "attention_function")


def site_name(stack: str, layer: int, kind: str) -> str:
    """Build the canonical name of a site, e.g. ``site_name("x", 2, "l2v") == "x.2.l2v"``."""
    name = f"{stack}.{int(layer)}.{kind}"
    if not _NAME.match(name):
        raise ValueError(f"invalid site name {name!r}: expected '{{stack}}.{{layer}}.{{kind}}'")
    return name


def parse_site_name(name: str) -> tuple[str, int, str]:
    """Split ``"x.2.l2v"`` into ``("x", 2, "l2v")``; raise ``ValueError`` on anything else."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"invalid site name {name!r}: expected '{{stack}}.{{layer}}.{{kind}}', e.g. 'lang.3.self'")
    return match["stack"], int(match["layer"]), match["kind"]


@dataclass(frozen=True)
class Site:
    """One attention site of a model.

    Attributes:
        name: canonical name, ``"{stack}.{layer}.{kind}"``.
        module: dotted path (from the model root) of the module whose forward *input*
            is this site's attention probabilities. For the HF LXMERT and VisualBERT
            classes that is the attention-probability dropout.
        call: which call of ``module`` within one forward pass of the model this site is
            (0 for ordinary modules; 0 and 1 for LXMERT's shared cross-attention).
        query: stream the queries (rows of ``A``) come from: one of :data:`STREAMS`.
        key: stream the keys (columns of ``A``) come from.
        heads: number of heads.
        via: how ``A`` is reached: ``"module_input"`` — it is the forward input of
            ``module`` (LXMERT's and VisualBERT's attention dropout); ``"attention_function"``
            — ``module`` hands it to transformers' attention-function registry
            (BERT, RoBERTa, DistilBERT, ViT in transformers 5).
    """

    name: str
    module: str
    call: int
    query: str
    key: str
    heads: int
    via: str = "module_input"

    def __post_init__(self) -> None:
        parse_site_name(self.name)
        if self.via not in VIAS:
            raise ValueError(f"site {self.name}: unknown via {self.via!r}; valid: {', '.join(VIAS)}")
        for stream in (self.query, self.key):
            if stream not in STREAMS:
                raise ValueError(f"site {self.name}: unknown stream {stream!r}; valid: {', '.join(STREAMS)}")

    @property
    def stack(self) -> str:
        return parse_site_name(self.name)[0]

    @property
    def layer(self) -> int:
        return parse_site_name(self.name)[1]

    @property
    def kind(self) -> str:
        return parse_site_name(self.name)[2]
