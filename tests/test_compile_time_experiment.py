"""Smoke test of experiments/compile_time.py in its --quick configuration.

Oracle: the files exist; the ratio is the quotient of the two medians; the train program
holds more fusions than the model's gradient alone (it contains it); a warm rerun of the
child process is a valid wall time.
"""

import json

import pytest
from conftest import load_experiment


@pytest.mark.slow
def test_quick_run_writes_report_summary_and_plot(tmp_path):
    module = load_experiment("compile_time")
    summary = module.main(["--quick", "--out", str(tmp_path)])
    for name in ("config.json", "summary.json", "report.md", "compile_time.png"):
        assert (tmp_path / name).exists(), name
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    (row,) = summary["programs"].values()
    vg, train = row["value_and_grad"], row["train"]
    assert row["ratio"] == pytest.approx(train["total_s"] / vg["total_s"])
    assert train["fusions"] > vg["fusions"] > 0
    (walls,) = summary["processes"].values()
    assert walls["cold"] > 0 and walls["warm"] > 0
    assert walls["warm_over_cold"] == pytest.approx(walls["warm"] / walls["cold"])
