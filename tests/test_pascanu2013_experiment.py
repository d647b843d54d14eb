"""``experiments/pascanu2013.py --quick`` end to end: its artifacts agree with each other."""

import csv
import json

import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    module = load_experiment("pascanu2013")
    out = tmp_path_factory.mktemp("pascanu2013")
    return out, module.main(["--quick", "--out", str(out)])


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_writes_every_artifact(run):
    """Oracle: the documented file list; PNG files start with the PNG signature."""
    out, _ = run
    for name in ("config.json", "summary.json", "runs.csv", "curves.csv"):
        assert (out / name).stat().st_size > 0, name
    for name in ("success.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    config = json.loads((out / "config.json").read_text())
    assert "jax" in config["versions"] and config["success_sequences"] == 10_000
    train = config["train_configs"]["12"]
    assert (train["optimizer"], train["learning_rate"], train["batch_size"]) == ("sgd", 0.01, 20)
    assert train["task_options"] == {"variant": "pascanu", "min_length": 10}


def test_success_table_counts_the_runs(run):
    """Oracle: runs.csv, counted by hand: success is exactly 0 errors on the fresh test;
    every method has one run per seed; summary.json is what main returned."""
    out, summary = run
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    rows = read_csv(out / "runs.csv")
    for row in rows:
        assert (row["success"] == "True") == (int(row["test_errors"]) == 0)
    for method, by_length in summary["success_table"].items():
        runs = [r for r in rows if r["method"] == method and r["T"] == "12"]
        assert sorted(int(r["seed"]) for r in runs) == [0, 1]
        wins = sum(r["success"] == "True" for r in runs)
        assert by_length["12"] == {"successes": wins, "runs": 2, "rate": wins / 2}


def test_sgd_and_clip_agree_until_clipping_starts(run):
    """Oracle: the same seed gives SGD and clip the same init and data, so their curves
    are equal at every check before the clipped run first clips."""
    out, _ = run
    curves = read_csv(out / "curves.csv")
    for seed in ("0", "1"):
        sgd = [c for c in curves if (c["method"], c["seed"]) == ("sgd", seed)]
        clip = [c for c in curves if (c["method"], c["seed"]) == ("clip", seed)]
        assert [c["step"] for c in sgd] == [c["step"] for c in clip] == ["20", "40"]
        for a, b in zip(sgd, clip, strict=True):
            if float(b["clip_rate"]) > 0:
                break
            assert a["train_loss"] == b["train_loss"] and a["error_rate"] == b["error_rate"]
