"""``experiments/cliff.py --quick`` end to end: the wall is where dynamical-systems theory
puts it, and the paths obey the SGD and clipping rules they were drawn with."""

import csv
import json

import numpy as np
import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    module = load_experiment("cliff")
    out = tmp_path_factory.mktemp("cliff")
    summary = module.main(["--quick", "--out", str(out)])
    return module, out, summary


def test_writes_every_artifact(run):
    """Oracle: the documented file list; the PNG starts with the PNG signature."""
    _, out, summary = run
    for name in ("config.json", "summary.json", "paths.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "cliff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text())["surfaces"].keys() == {"sigmoid", "tanh"}
    assert summary["surfaces"].keys() == {"sigmoid", "tanh"}


def test_the_wall_is_the_basin_boundary(run):
    """Oracle: in every grid column where x_0 is a clearly unstable fixed point of the
    line b = x_0 - w sigma(x_0) (|w sigma'(x_0)| >= 1.5), the largest gradient lies within
    one grid step of that line, which separates the two basins; and the gradient there
    is orders of magnitude above the median."""
    _, _, summary = run
    for found in summary["surfaces"].values():
        assert found["wall_columns"] > 10
        assert found["wall_largest_deviation_in_grid_steps"] <= 1.0
        assert found["grid_max_gradient_norm"] > 100 * found["grid_median_gradient_norm"]


def test_paths_follow_sgd_and_clipping(run):
    """Oracles: plain SGD moves by lr |g| (its largest step is lr times the largest
    gradient met), clipping bounds every step by lr x clip norm (Pascanu et al.'s
    Algorithm 1), and paths.csv ends where summary.json says."""
    module, out, summary = run
    args = module.parse_args(["--quick"])
    with open(out / "paths.csv") as handle:
        rows = list(csv.DictReader(handle))
    for surface in module.SURFACES:
        for path in summary["surfaces"][surface.activation]["paths"]:
            rate = surface.learning_rate
            if path["variant"] == "SGD":
                assert path["largest_step"] == pytest.approx(rate * path["max_gradient_norm"])
            else:
                assert path["largest_step"] <= rate * args.clip_norm * (1 + 1e-9)
            mine = [
                r
                for r in rows
                if r["activation"] == surface.activation
                and r["variant"] == path["variant"]
                and float(r["start_w"]) == path["start"][0]
            ]
            assert len(mine) == args.sgd_steps
            np.testing.assert_allclose([float(mine[-1]["w"]), float(mine[-1]["b"])], path["end"])
