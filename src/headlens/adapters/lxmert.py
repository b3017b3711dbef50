"""LXMERT (HF ``LxmertForQuestionAnswering``): 9 language, 5 vision, 5 cross layers.

Sites, in this order (the order defines the flattened ranking; docs/method.md#sites-of-lxmert):

1. ``lang.{i}.self`` — language self-attention L1…L9;
2. for X1…X5: ``x.{i}.l2v`` (language→vision cross-attention, ``T×36``) then
   ``x.{i}.lang_self`` (language self-attention in the cross layer);
3. ``vis.{i}.self`` — vision self-attention R1…R5;
4. for X1…X4: ``x.{i}.v2l`` (vision→language cross-attention, ``36×T``) then ``x.{i}.vis_self``.

The last cross layer's vision→language and vision self-attention are not sites: they
cannot reach the pooled [CLS] output. The cross-attention module is shared by both
directions; language→vision is its first call in a cross layer, vision→language its
second, so the two directions are separate sites.
"""

from __future__ import annotations

from .family import Family, Field, Layout, SitePattern, Stack, Stacks, Zeros

_ENC = "lxmert.encoder"
_CROSS = f"{_ENC}.x_layers.{{i}}.visual_attention.att.dropout"  # the attention-probability dropout


def schedule(config) -> list[list[str]]:
    """L1…L9 self; R1…R5 self; X1…X4: both co-attentions from the same matrices, then the
    language, then the vision self-attention; X5: language→vision, then language self."""
    steps = [[f"lang.{i}.self"] for i in range(config.l_layers)]
    steps += [[f"vis.{i}.self"] for i in range(config.r_layers)]
    last = config.x_layers - 1
    for i in range(last):
        steps += [[f"x.{i}.l2v", f"x.{i}.v2l"], [f"x.{i}.lang_self"], [f"x.{i}.vis_self"]]
    return steps + [[f"x.{last}.l2v"], [f"x.{last}.lang_self"]]


LXMERT = Family(
    name="lxmert",
    model_classes=("LxmertForQuestionAnswering",),
    sites=Stacks((
        Stack("l_layers", (SitePattern("lang.{i}.self", f"{_ENC}.layer.{{i}}.attention.self.dropout", "text", "text"),)),
        Stack("x_layers", (
            SitePattern("x.{i}.l2v", _CROSS, "text", "image", call=0),
            SitePattern("x.{i}.lang_self", f"{_ENC}.x_layers.{{i}}.lang_self_att.self.dropout", "text", "text"),
        )),
        Stack("r_layers", (SitePattern("vis.{i}.self", f"{_ENC}.r_layers.{{i}}.attention.self.dropout", "image", "image"),)),
        Stack("x_layers", (
            SitePattern("x.{i}.v2l", _CROSS, "image", "text", call=1),
            SitePattern("x.{i}.vis_self", f"{_ENC}.x_layers.{{i}}.visn_self_att.self.dropout", "image", "image"),
        ), skip_last=1),
    )),
    inputs={
        "input_ids": Field("input_ids"), "attention_mask": Field("attention_mask"), "token_type_ids": Zeros("input_ids"),
        "visual_feats": Field("features"), "visual_pos": Field("boxes"),
        "visual_attention_mask": Field("box_mask", required=False),
    },
    logits="question_answering_score",
    count_rule="keep_floor",
    image="visual_feats",
    image_mask="visual_attention_mask",
    layout=Layout("..", ("query", "key", "value"), "../output.dense"),
    answers="num_qa_labels",
    feature_dim="visual_feat_dim",
    schedule=schedule,
    original_pictures=("{image}_prune_{p}", True),
)  # fmt: skip
