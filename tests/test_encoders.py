"""BERT-family and ViT encoders: the invariants LXMERT and VisualBERT are held to."""

import copy
import csv
import json

import pytest
import torch
import transformers

import headlens
from headlens.edits import attention_function
from headlens.adapters import adapter_for
from headlens.cli import main
from headlens.data.text import label_indices, read_table
from headlens.export import export
from headlens.edits import capture, gates
from headlens.models import from_folder
from headlens.relevance import relevance_maps
from headlens.edits.lrp import lrp_mode

from conftest import hooks_left
from helpers import MODELS, WORDS, alone_inputs as alone, finite_difference_gate_gradients, text_model

F64 = torch.float64
@pytest.fixture(params=sorted(MODELS))
def subject(request):
    make, inputs = MODELS[request.param]
    return adapter_for(make()), inputs(), request.param


def test_sites_and_no_leftover_hooks_or_attention_switch(subject):
    adapter, inputs, kind = subject
    assert adapter.site_names == ["enc.0.self", "enc.1.self"] and adapter.num_heads == 4
    before = adapter.model.config._attn_implementation
    capture(adapter, inputs, relevance=True)
    with pytest.raises(RuntimeError, match="boom"):
        with gates(adapter, torch.ones(len(next(iter(inputs.values()))), 2, 4, dtype=F64)):
            assert attention_function.attached() == 2 and adapter.model.config._attn_implementation == "headlens"
            raise RuntimeError("boom")
    assert hooks_left(adapter.model) == [] and attention_function.attached() == 0
    assert adapter.model.config._attn_implementation == before


def value_projection(attention):
    return next(getattr(attention, name) for name in ("value", "v_lin", "v_proj") if hasattr(attention, name))


def test_gating_one_head_equals_zeroing_it_by_hand(subject):
    adapter, inputs, kind = subject
    head, site = 2, adapter.sites[1]
    mask = torch.ones(len(next(iter(inputs.values()))), 2, 4, dtype=F64)
    mask[:, 1, head] = 0
    with torch.no_grad(), gates(adapter, mask):
        gated = adapter.logits(inputs)
    reference = copy.deepcopy(adapter.model)
    attention_function.select(reference.config)  # eager attention with no hook (ViT's own softmaxes in float32)
    attention = reference.get_submodule(site.module)
    size = value_projection(attention).out_features // 4
    with torch.no_grad():
        value_projection(attention).weight[head * size : (head + 1) * size] = 0
        value_projection(attention).bias[head * size : (head + 1) * size] = 0
        expected = adapter_for(reference).logits(inputs)
        unpruned = adapter.logits(inputs)
    torch.testing.assert_close(gated, expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(gated, unpruned)


def test_exported_encoder_computes_what_the_gated_model_computes(subject, tmp_path):
    adapter, inputs, kind = subject
    keep = torch.ones(2, 4, dtype=F64)
    keep[0, [1, 3]] = 0
    keep[1] = 0  # a whole site: one silenced head stays
    export(adapter.model, keep, tmp_path / "pruned")
    pruned = from_folder(tmp_path / "pruned", progress=False).to(F64)
    with torch.no_grad(), gates(adapter, keep.expand(len(next(iter(inputs.values()))), -1, -1)):
        expected = adapter.logits(inputs)
    with torch.no_grad():
        torch.testing.assert_close(pruned(**inputs).logits, expected, rtol=1e-10, atol=1e-12)
    sizes = [value_projection(pruned.get_submodule(site.module)).out_features for site in adapter.sites]
    assert sizes == [8, 4]  # 16 hidden / 4 heads: two heads left, then one


@pytest.mark.parametrize("method", sorted(headlens.METHODS))
def test_scores_of_a_batch_equal_each_example_alone(subject, method):
    adapter, inputs, kind = subject
    together = headlens.score(adapter, inputs, method, seed=1) if method == "random" else headlens.score(adapter, inputs, method)
    if method == "random":
        return  # per-example ids: covered for LXMERT/VisualBERT
    assert together.shape == (len(next(iter(inputs.values()))), 2, 4) and torch.isfinite(together).all()
    # The Add rule divides by a branch's sum, which can nearly cancel: summation order (padding)
    # then shows up at ~1e-8 relative in float64, so LRP gets a looser tolerance.
    rtol = 1e-6 if method == "lrp" else 1e-8
    for row in range(together.shape[0]):
        torch.testing.assert_close(headlens.score(adapter, alone(inputs, row), method)[0], together[row], rtol=rtol, atol=1e-12)


def test_grad_and_taylor_equal_finite_differences_of_the_gates(subject):
    adapter, inputs, kind = subject
    single = type("B", (), {"inputs": alone(inputs, 1)})()
    single.__len__ = lambda self=None: 1
    with torch.no_grad():
        target = adapter.logits(single.inputs).argmax(-1)

    class One:
        inputs = single.inputs

        def __len__(self):
            return 1

    derivative = finite_difference_gate_gradients(adapter, One(), target)[0]
    tokens = single.inputs["attention_mask"].shape[1] if "attention_mask" in single.inputs else 17
    torch.testing.assert_close(headlens.score(adapter, single.inputs, "grad")[0], derivative / tokens**2, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(headlens.score(adapter, single.inputs, "taylor")[0], derivative.abs(), rtol=1e-5, atol=1e-9)


def test_lrp_conserves_relevance_to_the_encoder_input(subject):
    adapter, inputs, kind = subject
    embeddings = {"distilbert": "distilbert.embeddings", "vit": "vit.embeddings", "roberta": "roberta.embeddings"}.get(kind, "bert.embeddings")
    outputs = []
    handle = adapter.model.get_submodule(embeddings).register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        with torch.enable_grad(), lrp_mode(adapter.model):
            logits = adapter.logits(inputs)
    finally:
        handle.remove()
    one_hot = torch.zeros_like(logits).scatter_(1, logits.argmax(-1, keepdim=True), 1.0)
    (relevance,) = torch.autograd.grad(logits, outputs, grad_outputs=one_hot)
    torch.testing.assert_close(relevance.sum((1, 2)), torch.ones(logits.shape[0], dtype=F64), rtol=0, atol=1e-6)


def test_relevance_maps_have_the_model_s_streams(subject):
    adapter, inputs, kind = subject
    for method in ("ours", "lrp", "rollout", "raw"):
        maps = relevance_maps(adapter, inputs, method)
        if kind == "vit":
            assert maps.text is None and maps.image.shape == (3, 17) and maps.image[:, 0].abs().sum() == 0
        else:
            assert maps.image is None and maps.text.shape == inputs["input_ids"].shape
            assert (maps.text[~inputs["attention_mask"].bool()] == 0).all()
        for part in (maps.text, maps.image):
            assert part is None or torch.isfinite(part).all()


def test_unsupported_models_name_the_supported_families():
    model = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20))
    with pytest.raises(TypeError, match="no headlens adapter for GPT2ForSequenceClassification; supported model classes: "
                                        ".*BertForSequenceClassification.*GPT2LMHeadModel \\(decoder\\)"):  # fmt: skip
        adapter_for(model)


def test_text_tables_read_csv_and_jsonl_with_clear_errors(tmp_path):
    (tmp_path / "a.csv").write_text("text,label,id\nthe film was fine,pos,r1\nawful plot,neg,r2\n")
    assert read_table(tmp_path / "a.csv") == (["the film was fine", "awful plot"], ["pos", "neg"], ["r1", "r2"])
    (tmp_path / "b.jsonl").write_text(json.dumps({"review": "good", "y": 1}) + "\n\n" + json.dumps({"review": "bad", "y": 0}) + "\n")
    texts, labels, ids = read_table(tmp_path / "b.jsonl", "review", "y")
    assert texts == ["good", "bad"] and labels == [1, 0] and ids == ["b-1", "b-3"]
    assert label_indices(["pos", "neg", "1"], ["neg", "pos"], 2, "x") == [1, 0, 1]
    with pytest.raises(ValueError, match="x: label 'meh' is not one of \\['neg', 'pos'\\]"):
        label_indices(["meh"], ["neg", "pos"], 2, "x")
    with pytest.raises(ValueError, match="x: label 5 is out of range for a model with 2 classes"):
        label_indices([5], None, 2, "x")
    (tmp_path / "c.csv").write_text("text,label\nonly text,\n")
    with pytest.raises(ValueError, match="c.csv, line 2: no 'label' value"):
        read_table(tmp_path / "c.csv")
    with pytest.raises(FileNotFoundError, match="text data not found"):
        read_table(tmp_path / "missing.csv")


def test_prune_command_on_a_saved_classifier_and_a_csv(tmp_path, capsys):
    from transformers import BertTokenizer

    model = text_model("bert").float()
    model.config.id2label, model.config.label2id = {0: "neg", 1: "mid", 2: "pos"}, {"neg": 0, "mid": 1, "pos": 2}
    model.save_pretrained(tmp_path / "model")
    BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}).save_pretrained(tmp_path / "model")
    with open(tmp_path / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(20):
            writer.writerow([" ".join(WORDS[(i + k) % len(WORDS)] for k in range(5)), ["neg", "mid", "pos"][i % 3]])
    out = tmp_path / "out"
    assert main(["prune", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "data.csv"), f"out_dir={out}",
                 "data.num_examples=12", "data.score_examples=6", "progress=false", "sweep.methods=[grad,lrp]"]) == 0  # fmt: skip
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["model"] == "bert" and run["n_examples"] == 12 and len(run["score_ids"]) == 6
    assert {c["method"] for c in run["curves"]} == {"grad", "lrp"}
    assert "grad/head/negative/per_example" in capsys.readouterr().out
