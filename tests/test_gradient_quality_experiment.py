"""``experiments/gradient_quality.py --quick`` end to end: its artifacts agree with each
other, RTRL is exact, truncation is exact below its length, and the carried state of
each estimator has the size its algorithm implies."""

import csv
import json

import numpy as np
import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    module = load_experiment("gradient_quality")
    out = tmp_path_factory.mktemp("gradient_quality")
    summary = module.main(["--quick", "--out", str(out)])
    return out, summary


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_writes_every_artifact(run):
    """Oracle: the documented file list; PNG files start with the PNG signature."""
    out, _ = run
    for name in ("config.json", "summary.json", "cosine.csv", "cost.csv"):
        assert (out / name).stat().st_size > 0, name
    for name in ("cosine.png", "cost.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    config = json.loads((out / "config.json").read_text())
    assert config["cells"] == {"rnn": {"title": "tanh RNN", "online": ["uoro", "snap1", "rtrl"]}}
    assert "jax" in config["versions"]


def test_cosine_table_is_the_median_of_the_rows(run):
    """Oracle: NumPy's median of cosine.csv's whole-gradient rows, per estimator and T;
    RTRL is exact (cosine 1); tbptt:4 truncates nothing at T = 4 and something beyond."""
    out, summary = run
    rows = [r for r in read_csv(out / "cosine.csv") if r["group"] == "all"]
    table = summary["cosine_median"]["rnn"]
    assert set(table) == {"tbptt:4", "uoro", "snap1", "rtrl"}
    for name, by_length in table.items():
        for length, value in by_length.items():
            values = [
                float(r["cosine"]) for r in rows if (r["estimator"], r["T"]) == (name, length)
            ]
            assert len(values) == 2 * (3 if name == "uoro" else 1)  # draws x samples
            np.testing.assert_allclose(value, np.median(values))
    assert min(table["rtrl"].values()) > 1 - 1e-5
    assert table["tbptt:4"]["4"] > 1 - 1e-6 and table["tbptt:4"]["16"] < 1 - 1e-4


def test_costs_and_carried_state_sizes(run):
    """Oracle: the closed-form size of each estimator's carried trace (float32, batch
    B=2, tanh RNN H=8, F=2: S = 8 carry entries, P = 8 (8 + 2 + 2) = 96 parameters):
    none for BPTT, the last k2 - k1 = 0 steps for tbptt, S x P for RTRL, S + P for UORO
    and one params-sized trace per carry leaf for SnAp-1."""
    out, summary = run
    costs = summary["cost"]["rnn"]["8"]
    batch, size, count = 2, 8, 96
    # tbptt keeps the carry where its (here empty) history starts, and an int32 counter.
    expected = {"bptt": 0, "tbptt:4": batch * size * 4 + 4, "rtrl": batch * size * count * 4,
                "uoro": batch * (size + count) * 4, "snap1": batch * count * 4}  # fmt: skip
    for name, trace_bytes in expected.items():
        assert costs[name]["trace_mib"] * 2**20 == pytest.approx(trace_bytes), name
        assert costs[name]["ms_per_step"] > 0 and costs[name]["temp_mib"] >= 0
    assert costs["bptt"]["time_vs_bptt"] == 1.0
    rows = read_csv(out / "cost.csv")
    assert {r["estimator"] for r in rows} == set(expected)
