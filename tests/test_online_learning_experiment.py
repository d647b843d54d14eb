"""``experiments/online_learning.py --quick`` end to end: artifacts, and RTRL trains like BPTT."""

import csv
import json

import numpy as np
import pytest
from conftest import load_experiment

ESTIMATORS = ["bptt", "tbptt:4", "uoro", "snap1", "rtrl"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    module = load_experiment("online_learning")
    out = tmp_path_factory.mktemp("online_learning")
    return out, module.main(["--quick", "--out", str(out)])


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_writes_every_artifact(run):
    """Oracle: the documented file list; PNG files start with the PNG signature; one curve
    row per estimator, seed and chunk; one cost row per estimator."""
    out, summary = run
    for name in ("config.json", "summary.json", "curves.csv", "cost.csv"):
        assert (out / name).stat().st_size > 0, name
    for name in ("curves.png", "cost.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    config = json.loads((out / "config.json").read_text())
    assert "jax" in config["versions"]
    assert config["train_configs"]["uoro"]["gradient"] == "uoro"
    rows = read_csv(out / "curves.csv")
    assert len(rows) == len(ESTIMATORS) * 2 * 2  # estimators x seeds x chunks
    assert [r["estimator"] for r in read_csv(out / "cost.csv")] == ESTIMATORS
    assert summary["cost"]["bptt"]["time_vs_bptt"] == 1.0
    assert summary["cost"]["bptt"]["trace_bytes"] == 0 < summary["cost"]["rtrl"]["trace_bytes"]


def test_rtrl_trains_like_bptt(run):
    """Oracle: the BPTT run with the same seeds.  RTRL's gradient equals BPTT's up to
    float32 rounding, so after 20 Adam updates the test curves agree closely; UORO's
    (noisy) run does not."""
    out, _ = run
    rows = read_csv(out / "curves.csv")

    def curve(name):
        return np.array([float(r["test_mse"]) for r in rows if r["estimator"] == name])

    np.testing.assert_allclose(curve("rtrl"), curve("bptt"), rtol=1e-3)
    assert np.max(np.abs(curve("uoro") - curve("bptt"))) > 1e-3
