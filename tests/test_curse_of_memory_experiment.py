"""``experiments/curse_of_memory.py --quick`` end to end: its artifacts exist and agree
with each other, the measured sensitivity matches (1 + lambda^2) / (1 - lambda^2)^3
(Zucchet & Orvieto 2024), and every chosen student is trained."""

import csv
import json

import numpy as np
import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    module = load_experiment("curse_of_memory")
    out = tmp_path_factory.mktemp("curse_of_memory")
    return out, module.main(["--quick", "--out", str(out)]), module


def test_writes_every_artifact(run):
    """Oracle: the documented file list; the PNG starts with the PNG signature."""
    out, _, _ = run
    for name in ("config.json", "summary.json", "training.csv", "history.csv", "sensitivity.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curse_of_memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "jax" in json.loads((out / "config.json").read_text())["versions"]


def test_sensitivity_matches_the_closed_form(run):
    """Oracle: (1 + lambda^2) / (1 - lambda^2)^3 within 5 standard errors of the Monte
    Carlo mean (the relative standard error of a Gaussian's square is sqrt(2/N))."""
    _, summary, _ = run
    for row in summary["sensitivity"]:
        theory = (1 + row["lambda"] ** 2) / (1 - row["lambda"] ** 2) ** 3
        assert row["theory"] == pytest.approx(theory)
        assert abs(row["measured"] - theory) < 5 * row["standard_error"], row
        assert row["standard_error"] / theory == pytest.approx(np.sqrt(2 / 1024), rel=0.2)


def test_training_table_matches_the_runs(run):
    """Oracles: the (first) student is trained; summary.json's medians are NumPy's medians
    of training.csv; the zero-predictor loss is the task's closed form."""
    out, summary, module = run
    assert list(summary["training"]) == [module.STUDENTS[0].name]
    with open(out / "training.csv") as handle:
        rows = list(csv.DictReader(handle))
    from rnnlab.tasks import teacher_student

    for student, result in summary["training"].items():
        for memory, cell in result["by_memory"].items():
            mine = [
                r for r in rows if r["student"] == student and float(r["memory"]) == float(memory)
            ]
            losses = [float(r["final_test_loss"]) for r in mine]
            assert len(losses) == 2 and np.all(np.isfinite(losses))
            np.testing.assert_allclose(cell["median_final_test_loss"], np.median(losses))
            task = teacher_student(length=30, memory=float(memory), teacher_size=4)
            np.testing.assert_allclose(cell["baseline_loss"], task.baseline_loss)
            assert np.isfinite(cell["median_hessian_top_eigenvalue"])


def test_a_student_the_engine_rejects_is_reported(run):
    """Oracle: the registry's error for a student whose cell is not registered."""
    _, _, module = run
    student = module.Student("mystery", "mystery cell", "mystery", (), 1e-3)
    args = module.parse_args(["--quick"])
    with pytest.raises(ValueError, match="unknown cell 'mystery'"):
        module.student_config(student, 0.9, args)
    assert module.student_config(module.STUDENTS[0], 0.9, args).task == "teacher_student"
