import json
import re

import pytest

from headlens.cli import main
from headlens.report import page_data


def test_quick_demo_trains_once_then_uses_the_cache_and_writes_every_file(quick_demo, tmp_path, capsys):
    args, out, cache = quick_demo.args, quick_demo.out, quick_demo.cache
    assert quick_demo.code == 0
    assert quick_demo.printed.count("trained now") == 2
    assert {p.name for p in out.iterdir()} == {
        "results.json", "curves.csv", "per_example.npz", "curves.png", "curves_lxmert.png",
        "curves_visual_bert.png", "summary.md", "pointing.json", "faithfulness.json", "viz", "report.html",  # the partial results are gone
    }  # fmt: skip
    assert {p.name for p in (out / "viz" / "lxmert").iterdir() if p.is_file()} == {"heads_mean.png", "explained.npz"}
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["lxmert", "visual_bert"]
    for run in runs:
        assert run["n_examples"] == 8 and len(run["score_ids"]) == 8
        assert all(i.startswith("test-") for i in run["example_ids"])
        assert all(i.startswith("train-") for i in run["score_ids"])
        arms = {(c["method"], c["unit"], c["order"], c["protocol"]) for c in run["curves"]}
        assert len(arms) == 5 * 2 * 2 * 2  # grad, lrp, taylor, entropy, random
        assert all(c["auc_low"] <= c["auc"] <= c["auc_high"] for c in run["curves"])
        assert all(len(c["seed_auc"]) == 3 for c in run["curves"] if c["method"] == "random")  # the demo's band
        assert run["correlations"]["n_examples"] == 4  # demo-quick's sweep.correlation
    summary = (out / "summary.md").read_text()
    assert "| lxmert |" in summary and "| grad | head |" in summary and "![visual_bert curves]" in summary
    assert "[report.html](report.html)" in summary
    assert summary.count("### Which scores predict single-head ablation?") == 2 and "| attnlrp | " in summary
    assert not re.search(r"\bSPEC\b|\bNOTES\b", summary)  # the summary cites only what the repository holds
    figures = re.findall(r"!\[(?:lxmert|visual_bert) example\]\((viz/[^)]+/figure.png)\)", summary)
    assert len(figures) == 2 and all((out / f).is_file() for f in figures)
    pointing = json.loads((out / "pointing.json").read_text())
    assert {row["method"] for row in pointing["lxmert"]["rows"]} == {"ours", "lrp", "raw", "rollout"}
    assert "| ours |" in summary and "pointing game" in summary
    assert summary.count("Best ranking (global protocol, negative order, head unit): **") == 2
    assert re.search(r"\| grad \| head \| \d+\.\d \[\d+\.\d, \d+\.\d\] \|", summary)
    faithful = json.loads((out / "faithfulness.json").read_text())
    assert sorted(faithful) == ["lxmert", "visual_bert"] and faithful["lxmert"]["unit"] == "boxes"
    assert {(c["method"], c["order"]) for c in faithful["lxmert"]["curves"]} == {
        (m, o) for m in ("ours", "lrp", "rollout", "raw", "random") for o in ("positive", "negative")
    }
    assert summary.count("(perturbation test)") == 2 and "| rollout | " in summary
    again = tmp_path / "again"
    assert main([a if not a.startswith("out_dir=") else f"out_dir={again}" for a in args] + ["report=false"]) == 0
    assert capsys.readouterr().out.count("| cached |") == 2
    assert len(list(cache.iterdir())) == 2
    assert not (again / "report.html").exists() and not list(again.glob("viz/*/explained.npz"))
    assert "report.html" not in (again / "summary.md").read_text()
    pictures = tmp_path / "pictures"
    assert main(["visualize", "--quick", f"demo.cache_dir={cache}", f"out_dir={pictures}",
                 "viz.examples=2", "viz.method=rollout", "progress=false"]) == 0  # fmt: skip
    assert "training" not in capsys.readouterr().out  # the demo's cached models
    for family in ("lxmert", "visual_bert"):
        folders = [p for p in (pictures / "viz" / family).iterdir() if p.is_dir()]
        assert len(folders) == 2 and all((f / "figure.png").is_file() for f in folders)
    models = {m["name"]: m for m in page_data(pictures)["models"]}  # examples only: no sweep
    assert set(models) == {"lxmert", "visual_bert"} and (pictures / "report.html").is_file()
    assert all(len(m["examples"]) == 2 and m["levels"] == [0.0, 0.4, 0.6, 0.9] and not m["curves"] for m in models.values())


def test_demo_rejects_another_dataset(tmp_path, capsys):
    assert main(["demo", "--quick", "data.name=synthetic", f"out_dir={tmp_path}"]) == 2
    assert "the demo runs on easy_vqa" in capsys.readouterr().err


def test_quick_demo_adds_the_encoder_subjects_when_installed(quick_demo_encoders):
    out = quick_demo_encoders.out
    assert quick_demo_encoders.code == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    from headlens.subjects import smollm2

    assert [r["model"] for r in runs] == ["lxmert", "minilm-bbc", "vit-digits"] + ["smollm2-bbc"] * smollm2.available()
    minilm = runs[1]
    assert minilm["levels"] == [0.0, 0.25, 0.5, 0.75, 0.9] and len(minilm["example_ids"]) == 8
    assert {(c["protocol"], c["order"]) for c in minilm["curves"]} == {("global", "positive"), ("global", "negative")}
    summary = (out / "summary.md").read_text()
    assert "## minilm-bbc" in summary and "Share of the unpruned accuracy kept" in summary
    faithful = json.loads((out / "faithfulness.json").read_text())
    assert [faithful[n]["unit"] for n in ("lxmert", "minilm-bbc", "vit-digits")] == ["boxes", "tokens", "patches"]
    assert [faithful[n]["n_examples"] for n in ("lxmert", "minilm-bbc", "vit-digits")] == [8, 4, 8]
    tables = 3 + smollm2.available()  # lxmert, minilm-bbc, vit-digits (and smollm2-bbc)
    assert minilm["correlations"]["n_examples"] == 4 and summary.count("Spearman's ρ of each head score") == tables
    assert len(list((out / "viz" / "vit-digits").glob("digit-*.png"))) == 2
    models = {m["name"]: m for m in page_data(out)["models"]}
    assert [len(models[n]["examples"]) for n in ("lxmert", "minilm-bbc", "vit-digits")] == [1, 0, 2]
    vit = models["vit-digits"]["examples"][0]  # image only: [CLS] and 4 × 4 patches, no tokens
    assert vit["tokens"] == [] and vit["text"] is None and vit["boxes"][0] is None
    assert vit["image_labels"] == ["[CLS]"] + [f"patch {i}" for i in range(16)] and vit["levels"] == runs[2]["levels"]


def test_quick_demo_adds_smollm2_when_installed(quick_demo_encoders):
    from headlens.subjects import smollm2

    if not smollm2.available():
        pytest.skip(f"needs SmolLM2: {smollm2.EXTRA}")
    out = quick_demo_encoders.out
    run = json.loads((out / "results.json").read_text())["runs"][3]
    assert run["model"] == "smollm2-bbc" and run["levels"] == [0.0, 0.1, 0.25, 0.5] and len(run["example_ids"]) == 4
    assert run["num_heads"] == 9 and len(run["sites"]) == 30 and run["sites"][0]["name"] == "dec.0.self"
    curves = run["curves"]
    assert {"grad", "taylor", "random"} <= {c["method"] for c in curves}
    assert {(c["protocol"], c["order"]) for c in curves} == {("global", "negative")}
    # the accuracy is next-token accuracy over every given token: the language-model metric's own
    assert all(c["accuracy"] == pytest.approx(c["metrics"]["token_accuracy"], abs=1e-3) for c in curves)
    training = json.loads((smollm2.default_folder(quick_demo_encoders.cache).parent / "smollm2-bbc-seed0-tokens32"
                           / "training.json").read_text())  # fmt: skip
    assert 0 < training["test_accuracy"] < 100 and training["test_examples"] == 100 and training["test_perplexity"] > 1
    summary = (out / "summary.md").read_text()
    assert "## smollm2-bbc" in summary and "![smollm2-bbc curves](curves_smollm2-bbc.png)" in summary
    section = summary[summary.index("## smollm2-bbc"):]
    units = {c["unit"] for c in curves}
    assert units == {"head", "kv_group"}
    for unit in units:  # both units in the AUC table, named in the share-kept table and in the perplexity table
        assert f"| taylor | {unit} | " in section.split("Share of the unpruned")[0]
        assert f"| taylor | {unit} | " in section.split("Share of the unpruned")[1].split("Perplexity of")[0]
        assert f"| taylor | {unit} | " in section.split("Perplexity of the evaluated text")[1]
    assert len(list((out / "viz" / "smollm2-bbc").glob("*.png"))) == 1


def test_run_encoders_follows_each_declared_study(tmp_path):
    """A study is data: trained once into the cache, loaded, swept at its levels and units, its
    pictures kept; a study whose packages are missing is left out."""
    from conftest import synthetic, tiny_adapter

    from headlens.demo import Study, family_config, run_encoders
    from headlens.files import RunFolder

    adapter, trained, drawn = tiny_adapter("lxmert"), [], []

    def train(folder, progress, device, **settings):
        trained.append(settings)
        folder.mkdir(parents=True)
        (folder / "training.json").write_text("{}")

    def load(folder, device, progress):
        return adapter, synthetic(adapter, 6, 1, "model"), synthetic(adapter, 6, 2, "model"), {"detail": "fake"}

    def pictures(adapter_, held_out, folder, seed, record):
        drawn.append(folder)
        return [folder / "x.png"]

    studies = [Study("fake", lambda: True, train, load, lambda base: [0.0, 0.5], lambda quick: dict(seed=3, k=quick),
                     pictures=pictures, options=lambda: {"units": ["layer"]}, examples=lambda quick: 5),
               Study("absent", lambda: False, None, None, None, None)]  # fmt: skip
    base = family_config("lxmert", [f"demo.cache_dir={tmp_path / 'cache'}", "progress=false", "report=false"], True)
    for _ in range(2):
        runs = run_encoders(base, RunFolder(tmp_path / "out"), True, studies)
    assert trained == [{"seed": 3, "k": True}]  # the second run found the cached folder
    assert (tmp_path / "cache" / "fake-kTrue-seed3" / "training.json").is_file()
    [run] = runs
    assert run.name == "fake" and run.training == {"detail": "fake"} and run.figures == [drawn[-1] / "x.png"]
    assert run.result.levels == [0.0, 0.5] and {c.unit for c in run.result.curves} == {"layer"}
    assert len(run.result.example_ids) == 5 and len(run.result.score_ids) == 5
