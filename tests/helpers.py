"""Helpers shared by several test files: tiny encoders and their inputs, one example alone,
finite differences of the gates, and the relevance LRP hands to a model's inputs."""


import torch
import transformers

from headlens.data.batch import Batch
from headlens.edits import gates
from headlens.edits.lrp import lrp_mode
from headlens.models import BertMeanPoolClassifier

F64 = torch.float64

def alone(batch: Batch, row: int) -> Batch:
    """Example ``row`` as a batch of one, without the text padding the batch gave it."""
    length = int(batch.inputs["attention_mask"][row].sum())
    inputs = {k: v[row : row + 1] for k, v in batch.inputs.items()}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        inputs[key] = inputs[key][:, :length]
    return Batch({}, batch.labels[row : row + 1], [batch.ids[row]], inputs=inputs)


def logit_under_gates(adapter, batch, mask, target):
    with torch.no_grad(), gates(adapter, mask):
        return adapter.logits(batch.inputs).gather(1, target[:, None])[:, 0]


def finite_difference_gate_gradients(adapter, batch, target, eps=1e-6):
    """∂z_c/∂gate for every head by central differences of the gated model (float64)."""
    n, sites, heads = len(batch), adapter.num_sites, adapter.num_heads
    out = torch.zeros(n, sites, heads, dtype=F64)
    for s in range(sites):
        for h in range(heads):
            up = torch.ones(n, sites, heads, dtype=F64)
            down = up.clone()
            up[:, s, h] += eps
            down[:, s, h] -= eps
            out[:, s, h] = (logit_under_gates(adapter, batch, up, target) - logit_under_gates(adapter, batch, down, target)) / (2 * eps)
    return out


def alone_inputs(inputs, row):
    """Row ``row`` of a dict of inputs as a batch of one, without its text padding."""
    single = {k: v[row : row + 1] for k, v in inputs.items()}
    if "attention_mask" in single:
        length = int(single["attention_mask"].sum())
        single = {k: v[:, :length] for k, v in single.items()}
    return single


WORDS = ["good", "bad", "movie", "great", "awful", "film", "the", "was", "plot", "fine"]


def text_model(kind: str):
    common = dict(vocab_size=len(WORDS) + 5, num_labels=3, initializer_range=0.3)
    torch.manual_seed(0)
    if kind == "distilbert":
        config = transformers.DistilBertConfig(dim=16, n_heads=4, n_layers=2, hidden_dim=32, **common)
        return transformers.DistilBertForSequenceClassification(config).eval().to(F64)
    config_class = transformers.RobertaConfig if kind == "roberta" else transformers.BertConfig
    config = config_class(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                          pad_token_id=0, **common)  # fmt: skip
    model_class = {"bert": transformers.BertForSequenceClassification, "roberta": transformers.RobertaForSequenceClassification,
                   "probe": BertMeanPoolClassifier}[kind]  # fmt: skip
    return model_class(config).eval().to(F64)


def vit_model():
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=8, patch_size=2, num_channels=1, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=32, num_labels=10, initializer_range=0.3)  # fmt: skip
    return transformers.ViTForImageClassification(config).eval().to(F64)


def text_inputs(batch=4, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, len(WORDS) + 5, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch, 2):
        mask[row, length - 2 - row % 3 :] = 0  # different lengths
    return {"input_ids": ids * mask + (1 - mask) * 0, "attention_mask": mask}


def image_inputs(batch=3, seed=0):
    return {"pixel_values": torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=F64)}


MODELS = {
    "bert": (lambda: text_model("bert"), text_inputs),
    "roberta": (lambda: text_model("roberta"), text_inputs),
    "distilbert": (lambda: text_model("distilbert"), text_inputs),
    "probe": (lambda: text_model("probe"), text_inputs),
    "vit": (vit_model, image_inputs),
}


INPUT_MODULES = {
    "lxmert": ["lxmert.embeddings.word_embeddings", "lxmert.embeddings.position_embeddings",
               "lxmert.embeddings.token_type_embeddings", "lxmert.encoder.visn_fc.visn_fc",
               "lxmert.encoder.visn_fc.box_fc"],
    "visual_bert": ["visual_bert.embeddings.word_embeddings", "visual_bert.embeddings.position_embeddings",
                    "visual_bert.embeddings.token_type_embeddings", "visual_bert.embeddings.visual_projection",
                    "visual_bert.embeddings.visual_position_embeddings",
                    "visual_bert.embeddings.visual_token_type_embeddings"],
}  # fmt: skip


def input_relevance(adapter, batch, modules=None, rules="chefer", absorbed=None):
    """Per example, the relevance reaching the outputs of ``modules`` (default: the family's
    :data:`INPUT_MODULES`) from a one-hot at the answer, under ``rules``."""
    outputs = []
    handles = [
        adapter.model.get_submodule(path).register_forward_hook(lambda m, i, o: outputs.append(o))
        for path in modules or INPUT_MODULES[adapter.family]
    ]
    inputs = batch.inputs if hasattr(batch, "inputs") else batch
    try:
        with torch.enable_grad(), lrp_mode(adapter.model, rules=rules, absorbed=absorbed):
            logits = adapter.logits(inputs)
    finally:
        for handle in handles:
            handle.remove()
    one_hot = torch.zeros_like(logits).scatter_(1, logits.argmax(-1, keepdim=True), 1.0)
    found = torch.autograd.grad(logits, outputs, grad_outputs=one_hot)
    per_example = torch.zeros(logits.shape[0], dtype=logits.dtype)
    for tensor in found:  # a [1, T, D] position-embedding output is shared by the batch
        assert tensor.shape[0] in (1, logits.shape[0])
        per_example = per_example + tensor.sum(tuple(range(1, tensor.dim())))
    return per_example
