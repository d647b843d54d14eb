"""``experiments/long_range.py --quick`` end to end through :func:`rnnlab.sweep.run_sweep`:
its artifacts, and a killed run that resumes without training its finished seeds again."""

import pytest
from conftest import load_experiment

from rnnlab import io


def test_quick_run_resumes_finished_seeds(tmp_path, monkeypatch):
    """Oracle: the sweep's own session log: the session after the kill trains nothing (run 0,
    resumed 2), and the resumed rows are those of the killed session."""
    module = load_experiment("long_range")
    out = tmp_path / "long_range"
    argv = ["--quick", "--cells", "rnn", "--lengths", "5", "--out", str(out)]
    plot = module.plot_success_vs_length

    def killed(*args, **kwargs):  # after every seed trained, before the results are written
        raise RuntimeError("killed")

    monkeypatch.setattr(module, "plot_success_vs_length", killed)
    with pytest.raises(RuntimeError, match="killed"):
        module.main(argv)
    assert not (out / "summary.json").exists()
    monkeypatch.setattr(module, "plot_success_vs_length", plot)
    module.main(argv)

    sessions = io.read_jsonl(out / "sweep" / "adding-rnn-T5" / "sessions.jsonl")
    assert [(s["run"], s["resumed"]) for s in sessions] == [(2, 0), (0, 2)]
    (row,) = io.read_json(out / "summary.json")["rows"]
    assert (row["task"], row["cell"], row["length"]) == ("adding", "rnn", 5)
    assert len(row["final_test_losses"]) == len(row["first_success_steps"]) == 2
    assert row["success_threshold"] == pytest.approx(0.1 * row["baseline_loss"])
    assert row["wall_time_s"] == pytest.approx(sessions[0]["wall_seconds"])
    assert (out / "success_vs_length.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "results.csv").read_text().splitlines()) == 2
    assert "finished" in io.read_json(out / "config.json")["history"][-1]
