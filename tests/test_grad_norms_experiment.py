"""The flagship experiment (``experiments/grad_norms.py --quick``) end to end: its
artifacts exist and agree with each other, and its decay ratios obey the theory
(Pascanu et al. 2013's bound, geometric decay with T, Gers et al. 2000's forget bias)."""

import csv
import json

import numpy as np
import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    module = load_experiment("grad_norms")
    out = tmp_path_factory.mktemp("grad_norms")
    summary = module.main(["--quick", "--out", str(out)])
    return out, summary


def test_writes_every_artifact(run, capsys):
    """Oracle: the documented file list; PNG files start with the PNG signature."""
    out, _ = run
    for name in ("config.json", "summary.json", "curves.csv", "ratios.csv"):
        assert (out / name).stat().st_size > 0, name
    for name in ("curves_T20.png", "curves_T40.png", "decay.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["lengths"] == [20, 40] and config["dtype"] == "float64"
    assert config["kind"] == "grad_norms" and "numpy" in config["versions"]


def test_summary_matches_the_raw_ratios(run):
    """Oracle: summary.json's decay ratio is the median of that configuration's rows in
    ratios.csv (NumPy's median), for every configuration and length."""
    out, summary = run
    with open(out / "ratios.csv") as handle:
        rows = list(csv.DictReader(handle))
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["decay_ratio"] == json.loads(json.dumps(summary["decay_ratio"]))
    groups = {}
    for row in rows:
        key = (row["study"], row["family"], row["config"], row["leaf"], row["length"])
        groups.setdefault(key, []).append(float(row["ratio"]))
    classic = [key for key in groups if key[0] == "decay_ratio"]
    assert len(classic) == 2 * (4 + 3 * 2 + 1)  # lengths x (tanh + LSTM h, c + GRU)
    # lengths x (rnn + lstm h, c + lru x 3 + mingru + cornn y, z + lem y, z + indrnn + orthogonal)
    assert len(groups) - len(classic) == 2 * 13
    for (study, family, config, leaf, length), ratios in groups.items():
        assert len(ratios) == 2 * 2  # seeds x batch
        expected = np.median(ratios)
        np.testing.assert_allclose(on_disk[study][family][config][leaf][length], expected)


def test_decay_ratios_follow_the_theory(run):
    """Oracles: Pascanu et al. 2013's bound rho^(T-1) for the tanh RNN with orthogonal
    W = rho Q (sigma_max = rho, gamma = 1); less decay with larger rho and with a larger
    LSTM forget bias (Gers et al. 2000); and more decay at T=40 than at T=20 whenever the
    gradient vanishes (the per-step factors multiply)."""
    _, summary = run
    tanh = summary["decay_ratio"]["tanh"]
    for rho in (0.5, 0.9, 1.0):
        for length in (20, 40):
            assert tanh[f"recurrent_scale={rho:g}"]["h"][str(length)] <= rho ** (length - 1)
    for length in ("20", "40"):
        by_rho = [tanh[f"recurrent_scale={rho:g}"]["h"][length] for rho in (0.5, 0.9, 1.0, 1.5)]
        assert np.all(np.diff(by_rho) > 0), by_rho
        lstm = summary["decay_ratio"]["lstm"]
        by_bias = [lstm[f"forget_bias={b:g}"]["c"][length] for b in (0, 1, 2)]
        assert np.all(np.diff(by_bias) > 0), by_bias
    vanishing = [tanh["recurrent_scale=0.5"]["h"], summary["decay_ratio"]["gru"]["default"]["h"]]
    for ratios in vanishing:
        assert ratios["40"] < ratios["20"] < 1
    # The LRU is linear with |lambda| < 1: its gradient decays, the less so the closer its
    # eigenvalues' ring sits to 1 (Orvieto et al. 2023).
    lru = summary["decay_ratio_cells"]["lru"]
    for length in ("20", "60"):
        by_r_min = [lru[f"r_min={r:g}"]["h"][length] for r in (0, 0.9, 0.99)]
        assert np.all(np.diff(by_r_min) > 0) and by_r_min[-1] < 1, by_r_min
