"""Every error a user can cause ends as one line on stderr and exit code 2, naming the file or key.

One row per case: the front end, its arguments (``{name}`` fields are paths of the files the
module fixture builds, in the real formats), and what the one line must say.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from headlens.cli import main as headlens
from headlens.original import main as original, run_lxmert_perturbation, run_lxmert_visualization, run_mmf

import real_formats as rf


def written(path: Path, text: str) -> Path:
    """``path`` after writing ``text`` to it."""
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    paths = {"root": root}
    paths["model"] = rf.text_classifier_folder(root / "classifier")
    paths["csv"] = rf.labelled_csv(root / "data.csv")
    paths["latin1"] = rf.labelled_csv(root / "latin1.csv")
    paths["latin1"].write_bytes(paths["latin1"].read_bytes().replace(b"fine", "fïne".encode("latin-1")))
    paths["nolabel"] = written(root / "nolabel.csv", "text,stars\nthe film was fine,3\n")
    paths["badlabel"] = written(root / "badlabel.csv", "text,label\nthe film,meh\n")
    paths["jsonl"] = written(root / "bad.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", \n')
    no_tokenizer = root / "no_tokenizer"
    shutil.copytree(paths["model"], no_tokenizer)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    paths["no_tokenizer"] = no_tokenizer
    broken = root / "broken_config"
    shutil.copytree(paths["model"], broken)
    (broken / "config.json").write_text("{ not json")
    paths["broken_config"] = broken
    truncated = root / "truncated_weights"
    shutil.copytree(paths["model"], truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    paths["truncated_weights"] = truncated
    big_vocab = root / "big_vocab"
    rf.tokenizer_folder(big_vocab)  # 16 tokens: fits LXMERT's tiny model, not the 15-row classifier
    paths["big_vocab"] = big_vocab
    paths["yaml"] = written(root / "bad.yaml", "sweep: [methods,\n")
    paths["list_yaml"] = written(root / "list.yaml", "- 1\n- 2\n")
    paths["a_file"] = written(root / "a_file", "")
    valid, label2ans = rf.lxmert_questions(root)
    paths.update(valid=valid, label2ans=label2ans, tsv=rf.obj36_tsv(root / "f.tsv"),
                 lxmert=rf.lxmert_checkpoint(root / "lxmert"), tokenizer=rf.tokenizer_folder(root / "tok"))  # fmt: skip
    paths["notjson"] = written(root / "notjson.json", "[{")
    paths["mmf"] = rf.mmf_data(root / "mmf")
    return paths


def lxmert_args(extra=(), **replace):
    base = {"--valid": "{valid}", "--label2ans": "{label2ans}", "--features": "{tsv}", "--model": "{lxmert}",
            "--tokenizer": "{tokenizer}"}  # fmt: skip
    base.update(replace)
    return [item for pair in base.items() for item in pair] + ["--no-progress", "--out-dir", "{root}/out", *extra]


PRUNE = ["prune", "--model", "{model}", "--data", "{csv}", "progress=false", "out_dir={root}/out"]

CASES = [
    # --- headlens: configuration keys and values
    ("levels empty", headlens, ["sweep", "sweep.levels=[]"], "key 'sweep.levels': no levels"),
    ("levels repeated", headlens, ["sweep", "sweep.levels=[0,0.5,0.5]"], "key 'sweep.levels': levels must be strictly increasing"),
    ("levels unsorted", headlens, ["sweep", "sweep.levels=[0,0.5,0.1]"], "key 'sweep.levels': levels must be strictly increasing"),
    ("levels not from 0", headlens, ["sweep", "sweep.levels=[0.1,0.5]"], "key 'sweep.levels': the first level must be 0"),
    ("level out of range", headlens, ["sweep", "sweep.levels=[0,1.5]"], "key 'sweep.levels': every level must be a fraction"),
    ("batch size 0", headlens, ["sweep", "sweep.batch_size=0"], "key 'sweep.batch_size': must be at least 1, got 0"),
    ("negative examples", headlens, ["sweep", "data.num_examples=-4"], "key 'data.num_examples': must be at least 1, got -4"),
    ("negative scoring examples", headlens, ["sweep", "data.score_examples=-3"], "key 'data.score_examples': must be at least 0, got -3"),
    ("checkpoint_every 0", headlens, ["sweep", "sweep.checkpoint_every=0"], "key 'sweep.checkpoint_every'"),
    ("heads do not divide", headlens, ["sweep", "model.arch.heads=3"], "key 'model.arch.heads': 3 heads do not divide"),
    ("warmup above 1", headlens, ["train", "train.warmup=2"], "key 'train.warmup': must be in [0.0, 1.0], got 2"),
    ("unknown key", headlens, ["sweep", "sweep.orderz=[positive]"], "key 'sweep.orderz'"),
    ("wrong type", headlens, ["sweep", "sweep.batch_size=many"], "key 'sweep.batch_size'"),
    ("unknown family", headlens, ["sweep", "model.family=gpt"], "key 'model.family'"),
    ("unknown eval dtype", headlens, ["sweep", "sweep.eval_dtype=int8"], "key 'sweep.eval_dtype'"),
    ("unknown map method", headlens, ["sweep", "viz.method=saliency"], "key 'viz.method'"),
    ("export fraction", headlens, ["export", "export.fraction=1.5"], "key 'export.fraction'"),
    ("demo families", headlens, ["demo", "demo.families=[gpt]"], "key 'demo.families'"),
    ("unknown preset", headlens, ["sweep", "--preset", "nope"], "unknown preset 'nope'"),
    ("bad device", headlens, ["sweep", "device=gpu0", "out_dir={root}/out"], "key 'device'"),
    ("config not YAML", headlens, ["sweep", "--config", "{yaml}"], "bad.yaml: not a YAML mapping of config keys"),
    ("config a list", headlens, ["sweep", "--config", "{list_yaml}"], "list.yaml: expected a YAML mapping of config keys"),
    ("config missing", headlens, ["sweep", "--config", "{root}/missing.yaml"], "config file not found"),
    ("out_dir under a file", headlens, ["sweep", "out_dir={a_file}/run"], "out_dir {a_file}/run: cannot write there"),
    ("train on text", headlens, ["train", "data.name=text"], "key 'data.name'"),
    ("easy-VQA split", headlens, ["train", "--preset", "easy-vqa-lxmert", "data.split=val"], "key 'data.split': ['val'] is not a non-empty choice of train, test"),
    ("easy-VQA grid", headlens, ["train", "--preset", "easy-vqa-lxmert", "data.grid=3", "out_dir={root}/out", "progress=false"],
     "key 'data.grid': 64×64 images cannot be cut into a 3×3 grid"),
    ("train into a file", headlens, ["train", "--preset", "easy-vqa-lxmert", "out_dir={a_file}"], "out_dir {a_file}: cannot write there"),
    ("easy-VQA model missing", headlens, ["sweep", "--preset", "easy-vqa-lxmert", "model.path={root}/none"], "{root}/none"),
    ("easy-VQA folder wrong", headlens, ["sweep", "--preset", "easy-vqa-lxmert", "model.path={model}"],
     "is not a trained easy-VQA model: answers.txt is missing"),
    # --- headlens prune: the model folder and the labelled texts
    ("missing argument", headlens, ["prune", "--model", "{model}"], "the following arguments are required: --data"),
    ("data missing", headlens, [*PRUNE[:4], "{root}/missing.csv", *PRUNE[5:]], "text data not found: {root}/missing.csv"),
    ("no label column", headlens, [*PRUNE[:4], "{nolabel}", *PRUNE[5:]], "nolabel.csv, line 2: no 'label' value (columns: 'text', 'stars'"),
    ("unknown label", headlens, [*PRUNE[:4], "{badlabel}", *PRUNE[5:]], "badlabel.csv: label 'meh' is not one of ['neg', 'mid', 'pos']"),
    ("not UTF-8", headlens, [*PRUNE[:4], "{latin1}", *PRUNE[5:]], "latin1.csv, line 7: not UTF-8 text"),
    ("JSONL line", headlens, [*PRUNE[:4], "{jsonl}", *PRUNE[5:]], "bad.jsonl, line 2: not JSON"),
    ("model missing", headlens, ["prune", "--model", "{root}/none", "--data", "{csv}"], "checkpoint '{root}/none' not found"),
    ("no tokenizer files", headlens, ["prune", "--model", "{no_tokenizer}", *PRUNE[3:]], "no_tokenizer: no tokenizer files"),
    ("tokenizer of another model", headlens, [*PRUNE, "data.tokenizer={big_vocab}"],
     "the tokenizer has 16 tokens but the model's embeddings have 15 rows"),
    ("max_length beyond positions", headlens, [*PRUNE, "data.max_length=512"],
     "key 'data.max_length': 512 tokens, but the model's position embeddings cover 128"),
    ("config.json not JSON", headlens, ["prune", "--model", "{broken_config}", *PRUNE[3:]], "config.json: not a JSON model config"),
    ("weights truncated", headlens, ["prune", "--model", "{truncated_weights}", *PRUNE[3:]], "truncated_weights: cannot load the model"),
    ("download into a file", headlens, ["download", "lxmert-answers", "--dir", "{a_file}", "--no-progress"], "{a_file}"),
    # --- lxmert/lxmert/perturbation.py and generate_visualization.py
    ("num-samples negative", run_lxmert_perturbation, lxmert_args(["--num-samples", "-4"]), "argument --num-samples: must be at least 1, got -4"),
    ("batch-size zero", run_lxmert_perturbation, lxmert_args(["--batch-size", "0"]), "argument --batch-size: must be at least 1, got 0"),
    ("bool flag", run_lxmert_perturbation, lxmert_args(["--is-positive-pert", "maybe"]), "expected True or False, got 'maybe'"),
    ("valid.json missing", run_lxmert_perturbation, lxmert_args(**{"--valid": "{root}/none.json"}), "LXMERT questions not found: {root}/none.json"),
    ("valid.json not JSON", run_lxmert_perturbation, lxmert_args(**{"--valid": "{notjson}"}), "notjson.json"),
    ("features missing", run_lxmert_perturbation, lxmert_args(**{"--features": "{root}/none.tsv"}), "LXMERT features not found"),
    ("checkpoint missing", run_lxmert_perturbation, lxmert_args(**{"--model": "{root}/none"}), "checkpoint '{root}/none' not found"),
    ("pictures without images", run_lxmert_visualization, lxmert_args(), "pictures need the COCO images"),
    # --- run.py
    ("examples negative", run_mmf, ["prune.num_of_examples=-3"], "key 'prune.num_of_examples': must be at least 1, got -3"),
    ("batch size zero", run_mmf, ["training.batch_size=0"], "key 'training.batch_size': must be at least 1, got 0"),
    ("unknown trainer", run_mmf, ["training.trainer=mmf_train"], "key 'training.trainer'"),
    ("unknown key", run_mmf, ["prune.is_gradient=True"], "prune.is_gradient"),
    ("zoo checkpoint missing", run_mmf, ["env.data_dir={mmf}", "out_dir={root}/out"],
     "checkpoint 'visual_bert.finetuned.vqa2.from_coco_train' not found"),
]  # fmt: skip


def fill(value, paths):
    return value.format(**{k: str(v) for k, v in paths.items()})


@pytest.mark.parametrize("name, front, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(files, capsys, name, front, argv, expected):
    argv = [fill(a, files) for a in argv]
    try:
        code = front(argv) if front is headlens else original(front, argv)
    except SystemExit as exit:  # argparse exits; the real command would exit with this code
        code = exit.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("headlens: note:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert fill(expected, files) in lines[0]
    assert "error" in lines[0] and "Traceback" not in err


def test_a_real_command_prints_one_line_and_debug_shows_the_traceback(files, tmp_path):
    command = [sys.executable, "-m", "headlens.cli", "prune", "--model", str(files["model"]), "--data",
               str(files["nolabel"]), f"out_dir={tmp_path}", "progress=false"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    debug = subprocess.run(command[:3] + ["--debug"] + command[3:], capture_output=True, text=True)
    assert "Traceback" in debug.stderr and "no 'label' value" in debug.stderr


def test_an_excel_csv_with_a_byte_order_mark_reads(files, tmp_path):
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + files["csv"].read_bytes())
    assert headlens([*[fill(a, files) for a in PRUNE[:4]], str(bom), f"out_dir={tmp_path}/out", "progress=false",
                     "data.num_examples=6", "data.score_examples=4", "sweep.methods=[random]"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "out/results.json").read_text())["runs"][0]["n_examples"] == 6
