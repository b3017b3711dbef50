import json

from headlens.cli import main
from headlens.digest import file_sha256
from headlens.results import read_results


def test_sweep_command_writes_result_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main([
        "sweep", "--preset", "tiny-lxmert", f"out_dir={out}", "data.num_examples=6", "data.score_examples=4",
        "sweep.methods=[grad,entropy]", "progress=false",
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "grad/head/negative/per_example" in printed and "entropy/layer/positive/global" in printed
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["model"] == "lxmert" and run["n_examples"] == 6 and len(run["score_ids"]) == 4
    assert len(run["curves"]) == 2 * 2 * 2 * 2
    assert run["config"]["sweep"]["methods"] == ["grad", "entropy"]
    # one set, listed by results.json (the report with it); the partial results of the finished run are gone
    assert {p.name for p in out.iterdir()} == {"results.json", "curves.csv", "curves.png", "per_example.npz", "report.html"}
    assert sorted(json.loads((out / "results.json").read_text())["files"]) == [
        "curves.csv", "curves.png", "per_example.npz", "report.html",
    ]  # fmt: skip
    assert run["provenance"] == {
        "model": "lxmert", "checkpoint": None, "checkpoint_path": None, "checkpoint_sha256": None,
        "data": {"name": "synthetic", "examples": 6, "score_examples": 4},
        "seeds": {"data": 1234, "random_method": 0, "model_init": 0},
    }  # fmt: skip
    assert [s["name"] for s in run["sites"]][:2] == ["lang.0.self", "lang.1.self"] and run["count_rule"] == "keep_floor"
    assert set(run["mean_scores"]) == {"grad", "entropy"} and len(run["mean_scores"]["grad"]) == len(run["sites"])
    (out / "report.html").write_text("edited by hand")  # headlens report rebuilds it and brings results.json up to date
    assert main(["report", str(out)]) == 0 and (out / "report.html").read_text().startswith("<!doctype html>")
    assert read_results(out)["files"]["report.html"] == file_sha256(out / "report.html")
    quiet = tmp_path / "quiet"
    assert main(["sweep", "--preset", "tiny-lxmert", f"out_dir={quiet}", "data.num_examples=2", "data.score_examples=2",
                 "sweep.methods=[random]", "progress=false", "report=false"]) == 0  # fmt: skip
    assert (quiet / "results.json").is_file() and not (quiet / "report.html").exists()


def test_sites_and_methods_commands(capsys):
    assert main(["sites", "model.family=visual_bert"]) == 0
    printed = capsys.readouterr().out
    assert "visual_bert: 3 sites × 4 heads = 12 heads" in printed and "enc.2.self" in printed
    # easy-VQA presets name a trained model: without one, an error, not a tiny random model's sites
    assert main(["sites", "--preset", "easy-vqa-visual_bert"]) == 2
    assert "key 'model.path': easy_vqa needs a trained model folder" in capsys.readouterr().err
    assert main(["methods"]) == 0
    assert "taylor" in capsys.readouterr().out


def test_bad_config_exits_2_naming_the_key(capsys):
    assert main(["sweep", "sweep.orderz=[positive]"]) == 2
    assert "key 'sweep.orderz'" in capsys.readouterr().err
    assert main(["sweep", "model.family=gpt"]) == 2
    assert "key 'model.family': ['gpt'] is not a non-empty choice of lxmert, visual_bert, bert, vit, decoder, auto" in capsys.readouterr().err
    assert main(["sweep", "sweep.orders=[up]"]) == 2
    assert "key 'sweep.orders'" in capsys.readouterr().err
