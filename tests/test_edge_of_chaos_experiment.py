"""``experiments/edge_of_chaos.py --quick`` end to end: its artifacts exist and agree with
each other, and its numbers obey the theory (for g < 1 the autonomous tanh network
decays to 0, where lambda_max = log rho(W) < 0; a larger forget bias slows the LSTM's
contraction; the gradient rate follows lambda_max)."""

import csv
import json

import numpy as np
import pytest
from conftest import load_experiment


def load():
    module = load_experiment("edge_of_chaos")
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("edge_of_chaos")
    return out, load().main(["--quick", "--out", str(out)])


def test_writes_every_artifact(run):
    """Oracle: the documented file list; the PNG starts with the PNG signature; every
    family is either measured or skipped with its reason."""
    out, summary = run
    for name in ("config.json", "summary.json", "samples.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "edge_of_chaos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float64" and "jax" in config["versions"]
    assert set(summary["families"]) | set(summary["skipped"]) == {"tanh", "lstm", "lru"}
    assert {"tanh", "lstm"} <= set(summary["families"])


def test_summary_medians_match_the_samples(run):
    """Oracle: summary.json's medians are NumPy's medians of samples.csv's seeds."""
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "samples.csv") as handle:
        rows = list(csv.DictReader(handle))
    for family, by_size in summary["families"].items():
        for size_key, result in by_size.items():
            size = size_key.split("=")[1]
            for i, value in enumerate(result["values"]):
                seeds = [
                    float(r["lambda_max"])
                    for r in rows
                    if r["family"] == family
                    and r["size"] == size
                    and float(r[result["parameter"]]) == value
                ]
                assert len(seeds) == 2
                np.testing.assert_allclose(result["median"]["lambda_max"][i], np.median(seeds))


def test_exponents_follow_the_theory(run):
    """Oracles: tanh at g = 0.5 contracts (lambda_max < 0, near log 0.5 + log of the
    spectral radius's spread) and lambda_max rises with g; the LSTM's exponent is
    negative and rises with the forget bias; the gradient rate lies within 0.1 of
    lambda_max where the dynamics contract (T = 40 leaves an O(1/T) offset)."""
    _, summary = run
    tanh = summary["families"]["tanh"]["N=16"]
    lam = np.asarray(tanh["median"]["lambda_max"])
    assert -1.2 < lam[0] < -0.2 and np.all(np.diff(lam) > 0), lam
    lstm = summary["families"]["lstm"]["N=16"]["median"]["lambda_max"]
    assert lstm[0] < lstm[1] < 0, lstm
    rate = np.asarray(tanh["median"]["gradient_rate"])
    assert abs(rate[0] - lam[0]) < 0.1, (rate, lam)


def test_zero_crossing_interpolates_linearly():
    """Oracle: a straight line crosses 0 where the closed form says; none without a
    sign change from below."""
    crossing = load().zero_crossing
    values = np.array([0.5, 1.0, 1.5, 2.0])
    assert crossing(values, 0.4 * (values - 1.2)) == pytest.approx(1.2)
    assert crossing(values, np.array([-1.0, -0.5, -0.2, -0.1])) is None
    assert crossing(values, np.array([1.0, -0.5, -0.2, -0.1])) is None
