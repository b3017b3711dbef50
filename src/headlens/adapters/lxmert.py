"""LXMERT (HF ``LxmertForQuestionAnswering``): 9 language, 5 vision, 5 cross layers.

Sites, in the order of SPEC §2 (the order defines the flattened ranking):

1. ``lang.{i}.self`` — language self-attention L1…L9;
2. for X1…X5: ``x.{i}.l2v`` (language→vision cross-attention, ``T×36``) then
   ``x.{i}.lang_self`` (language self-attention in the cross layer);
3. ``vis.{i}.self`` — vision self-attention R1…R5;
4. for X1…X4: ``x.{i}.v2l`` (vision→language cross-attention, ``36×T``) then
   ``x.{i}.vis_self``.

The last cross layer's vision→language and vision self-attention are not sites:
they cannot reach the pooled [CLS] output. The cross-attention module is shared
by both directions; the language→vision direction is its first call in a cross
layer, vision→language its second, so the two directions are separate sites.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sites import Site, site_name
from .base import Adapter, Inputs

_ENC = "lxmert.encoder"
_DROPOUT = "self.dropout"  # the attention-probability dropout inside a self-attention block


class LxmertAdapter(Adapter):
    family = "lxmert"
    model_classes = ("LxmertForQuestionAnswering",)
    count_rule = "keep_floor"
    image_key = "visual_feats"
    image_mask_key = "visual_attention_mask"

    @classmethod
    def build_sites(cls, config) -> list[Site]:
        heads = config.num_attention_heads
        n_lang, n_cross, n_vis = config.l_layers, config.x_layers, config.r_layers

        def site(stack, layer, kind, module, query, key, call=0):
            return Site(site_name(stack, layer, kind), module, call, query, key, heads)

        def cross(i):
            return f"{_ENC}.x_layers.{i}.visual_attention.att.dropout"

        sites = [site("lang", i, "self", f"{_ENC}.layer.{i}.attention.{_DROPOUT}", "text", "text") for i in range(n_lang)]
        for i in range(n_cross):
            sites.append(site("x", i, "l2v", cross(i), "text", "image", call=0))
            sites.append(site("x", i, "lang_self", f"{_ENC}.x_layers.{i}.lang_self_att.{_DROPOUT}", "text", "text"))
        sites += [
            site("vis", i, "self", f"{_ENC}.r_layers.{i}.attention.{_DROPOUT}", "image", "image") for i in range(n_vis)
        ]
        for i in range(n_cross - 1):  # the last cross layer's vision side never reaches [CLS]
            sites.append(site("x", i, "v2l", cross(i), "image", "text", call=1))
            sites.append(site("x", i, "vis_self", f"{_ENC}.x_layers.{i}.visn_self_att.{_DROPOUT}", "image", "image"))
        return sites

    def logits(self, inputs: Inputs) -> Tensor:
        return self.model(**inputs).question_answering_score

    def pooled_row(self, inputs: Inputs) -> Tensor:
        # The pooler reads [CLS], position 0 of the language stream.
        return torch.zeros(inputs["input_ids"].shape[0], dtype=torch.long, device=inputs["input_ids"].device)

    def relevance_schedule(self) -> list[list[str]]:
        """L1…L9 self; R1…R5 self; X1…X4: both co-attentions from the same matrices, then the
        language, then the vision self-attention; X5: language→vision, then language self."""
        config = self.model.config
        steps = [[f"lang.{i}.self"] for i in range(config.l_layers)]
        steps += [[f"vis.{i}.self"] for i in range(config.r_layers)]
        last = config.x_layers - 1
        for i in range(last):
            steps += [[f"x.{i}.l2v", f"x.{i}.v2l"], [f"x.{i}.lang_self"], [f"x.{i}.vis_self"]]
        return steps + [[f"x.{last}.l2v"], [f"x.{last}.lang_self"]]

    @property
    def feature_dim(self) -> int:
        return self.model.config.visual_feat_dim

    @property
    def num_answers(self) -> int:
        return self.model.config.num_qa_labels

    def vqa_inputs(self, input_ids, attention_mask, features, boxes, box_mask=None) -> dict[str, Tensor]:
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
            "visual_feats": features,
            "visual_pos": boxes,
        }
        if box_mask is not None:
            inputs["visual_attention_mask"] = box_mask
        return inputs

    #: layer counts of a model made from scratch, as ``make_config``'s ``layers`` takes them.
    default_layers = {"language": 2, "cross": 2, "vision": 2}

    @classmethod
    def _family_config(cls, common: dict, layers: dict, feature_dim: int, n_answers: int):
        from transformers import LxmertConfig

        return LxmertConfig(
            **common, l_layers=layers["language"], x_layers=layers["cross"], r_layers=layers["vision"],
            visual_feat_dim=feature_dim, visual_pos_dim=4, num_qa_labels=n_answers,
        )  # fmt: skip
