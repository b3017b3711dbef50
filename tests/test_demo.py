import json
import re

import pytest

from headlens.cli import main
from headlens.subjects.encoders import available


def test_quick_demo_trains_once_then_uses_the_cache_and_writes_every_file(tmp_path, capsys):
    args = ["demo", "--quick", f"demo.cache_dir={tmp_path / 'cache'}", f"out_dir={tmp_path / 'out'}", "progress=false",
            "demo.encoders=false"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.count("trained now") == 2
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {
        "results.json", "curves.csv", "per_example.npz", "curves.png", "curves_lxmert.png",
        "curves_visual_bert.png", "summary.md", "pointing.json", "viz",  # the partial results are gone
    }  # fmt: skip
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["lxmert", "visual_bert"]
    for run in runs:
        assert run["n_examples"] == 8 and len(run["score_ids"]) == 8
        assert all(i.startswith("test-") for i in run["example_ids"])
        assert all(i.startswith("train-") for i in run["score_ids"])
        arms = {(c["method"], c["unit"], c["order"], c["protocol"]) for c in run["curves"]}
        assert len(arms) == 5 * 2 * 2 * 2  # grad, lrp, taylor, entropy, random
    summary = (out / "summary.md").read_text()
    assert "| lxmert |" in summary and "| grad | head |" in summary and "![visual_bert curves]" in summary
    figures = re.findall(r"!\[(?:lxmert|visual_bert) example\]\((viz/[^)]+/figure.png)\)", summary)
    assert len(figures) == 2 and all((out / f).is_file() for f in figures)
    pointing = json.loads((out / "pointing.json").read_text())
    assert {row["method"] for row in pointing["lxmert"]["rows"]} == {"ours", "lrp", "raw", "rollout"}
    assert "| ours |" in summary and "pointing game" in summary
    assert main(args) == 0
    assert capsys.readouterr().out.count("| cached |") == 2
    assert len(list((tmp_path / "cache").iterdir())) == 2
    pictures = tmp_path / "pictures"
    assert main(["visualize", "--quick", f"demo.cache_dir={tmp_path / 'cache'}", f"out_dir={pictures}",
                 "viz.examples=2", "viz.method=rollout", "progress=false"]) == 0  # fmt: skip
    assert "training" not in capsys.readouterr().out  # the demo's cached models
    for family in ("lxmert", "visual_bert"):
        folders = [p for p in (pictures / "viz" / family).iterdir() if p.is_dir()]
        assert len(folders) == 2 and all((f / "figure.png").is_file() for f in folders)


def test_demo_rejects_another_dataset(tmp_path, capsys):
    assert main(["demo", "--quick", "data.name=synthetic", f"out_dir={tmp_path}"]) == 2
    assert "the demo runs on easy_vqa" in capsys.readouterr().err


@pytest.mark.skipif(not all(available().values()), reason="needs headlens[encoders] (MiniLM, BBC News, scikit-learn)")
def test_quick_demo_adds_the_encoder_subjects_when_installed(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--quick", f"demo.cache_dir={tmp_path / 'cache'}", f"out_dir={out}", "progress=false",
                 "demo.families=[lxmert]"]) == 0  # fmt: skip
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["lxmert", "minilm-bbc", "vit-digits"]
    minilm = runs[1]
    assert minilm["levels"] == [0.0, 0.25, 0.5, 0.75, 0.9] and len(minilm["example_ids"]) == 8
    summary = (out / "summary.md").read_text()
    assert "## minilm-bbc" in summary and "Share of the unpruned accuracy kept" in summary
    assert len(list((out / "viz" / "vit-digits").glob("digit-*.png"))) == 2
