"""Sweep analysis and result rows: importance, marginals, heatmap tables, files, plots."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab.io import read_jsonl
from rnnlab.plots.sweep import plot_heatmaps, plot_importance, plot_marginals, value_labels
from rnnlab.sweep import (
    heatmap_table,
    importance,
    make_row,
    marginal,
    metric_values,
    steps_to_threshold,
)
from rnnlab.sweep.analysis import findings, levels
from rnnlab.sweep.results import append_rows, load_rows, write_results


def additive_rows(a_effects, b_effects, repeats=1):
    """A balanced full factorial with log10(metric) = a_i + b_j exactly."""
    rows = []
    for (i, a), (j, b), r in itertools.product(
        enumerate(a_effects), enumerate(b_effects), range(repeats)
    ):
        rows.append({"a": i, "b": float(j), "seed": r, "loss": 10.0 ** (a + b), "diverged": False})
    return rows


effects = st.lists(st.floats(-2, 2), min_size=2, max_size=5)


@given(effects, effects)
def test_importance_recovers_additive_variance_shares(a_effects, b_effects):
    """Oracle: for y = a_i + b_j on a balanced grid, Var(y) = Var(a) + Var(b) exactly, so the
    main-effect fractions are Var(a)/Var(y) and Var(b)/Var(y), with no interaction left."""
    rows = additive_rows(a_effects, b_effects)
    total = np.var(a_effects) + np.var(b_effects)
    result = importance(rows, ["a", "b"], "loss")
    if total < 1e-9:
        assert result["a"] == result["b"] == 0.0
        return
    np.testing.assert_allclose(result["a"], np.var(a_effects) / total, atol=1e-6)
    np.testing.assert_allclose(result["b"], np.var(b_effects) / total, atol=1e-6)
    assert result["interactions+noise"] < 1e-6


def test_importance_of_a_pure_interaction_is_zero():
    """Oracle: y = a XOR b has no main effect: every marginal mean equals the grand mean."""
    rows = [{"a": a, "b": b, "loss": 10.0 ** (a ^ b)} for a in (0, 1) for b in (0, 1)]
    result = importance(rows, ["a", "b"], "loss")
    assert result["a"] == pytest.approx(0) and result["b"] == pytest.approx(0)
    assert result["interactions+noise"] == pytest.approx(1)


@given(st.lists(st.floats(1e-5, 1.0), min_size=9, max_size=60, unique=True), st.integers(2, 8))
def test_levels_bin_continuous_values_by_equal_counts(values, bins):
    """Oracle: quantile binning: bins are ordered, and their sizes differ by at most one."""
    index, centers = levels(values, bins)
    if len(values) <= bins:
        assert sorted(index) == list(range(len(values)))
        return
    counts = np.bincount(index, minlength=bins)
    assert counts.max() - counts.min() <= 1
    order = np.argsort(values)
    assert np.all(np.diff(index[order]) >= 0)
    assert centers == sorted(centers)


def test_metric_values_scores_nonfinite_as_worst():
    """Oracle: the documented convention: a NaN or inf metric counts as the worst finite one."""
    rows = [{"loss": 0.1}, {"loss": float("nan")}, {"loss": 10.0}, {"loss": float("inf")}]
    np.testing.assert_allclose(metric_values(rows, "loss"), [-1, 1, 1, 1])
    with pytest.raises(ValueError, match="metric='nope'"):
        metric_values(rows, "nope")


def test_heatmap_table_and_marginal_match_direct_numpy():
    """Oracle: medians and diverged fractions recomputed with numpy on the selected rows."""
    rng = np.random.default_rng(0)
    rows = [
        {"lr": lr, "fb": fb, "seed": s, "loss": float(rng.uniform(0.01, 1)), "diverged": bool(d)}
        for lr, fb, s, d in itertools.product([1e-3, 1e-2, 1e-1], [0.0, 1.0], range(3), [0, 1])
    ]
    table = heatmap_table(rows, "lr", "fb", "loss")
    for (j, fb), (i, lr) in itertools.product(enumerate([0.0, 1.0]), enumerate([1e-3, 1e-2, 1e-1])):
        members = [r for r in rows if r["lr"] == lr and r["fb"] == fb]
        assert table["value"][j, i] == pytest.approx(
            np.median([math.log10(r["loss"]) for r in members])
        )
        assert table["diverged"][j, i] == pytest.approx(np.mean([r["diverged"] for r in members]))
        assert table["count"][j, i] == len(members)
    for level in marginal(rows, "fb", "loss"):
        members = [math.log10(r["loss"]) for r in rows if r["fb"] == level["value"]]
        assert level["mean"] == pytest.approx(np.mean(members))
        assert level["count"] == len(members)


def test_make_row_thresholds_and_divergence():
    """Oracle: the history written by hand: first step under the threshold, NaN -> diverged."""
    history = {
        "step": np.array([10, 20, 30]),
        "test_loss": np.array([0.2, 0.05, 0.01]),
        "train_loss": np.array([0.3, np.nan, 0.02]),
        "diverged": np.array(False),
        "diverged_step": np.array(15),
    }
    assert steps_to_threshold(history, 0.06) == 20
    assert steps_to_threshold(history, 0.001) is None
    row = make_row({"id": "x", "lr": 0.12}, history, group="g", threshold=lambda c: 0.5 * c["lr"])
    assert row["steps_to_threshold"] == 20 and row["threshold"] == pytest.approx(0.06)
    assert row["diverged"] is True  # a NaN training loss, though the engine flag is False
    assert row["final_test_loss"] == 0.01 and row["best_test_loss"] == 0.01
    assert row["diverged_step"] == 15 and row["steps"] == 30


def test_result_files_round_trip(tmp_path):
    """Oracle: what was written: JSONL rows read back (NaN restored), CSV has one line per row."""
    rows = [{"id": "a", "loss": float("nan"), "diverged": True}, {"id": "b", "loss": 0.5}]
    append_rows(tmp_path, rows, [{"id": "a", "step": np.arange(3)}])
    loaded = load_rows(tmp_path)
    assert math.isnan(loaded["a"]["loss"]) and loaded["b"]["loss"] == 0.5
    assert read_jsonl(tmp_path / "curves.jsonl")[0]["step"] == [0, 1, 2]
    write_results(tmp_path, rows, {"configurations": 2})
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 3


def test_plots_write_pngs(tmp_path):
    """Oracle: the PNG signature of each written file (the figures are checked by eye)."""
    rows = additive_rows([0.0, 1.0, 2.0], [0.0, -1.0])
    rows[0]["diverged"] = True
    panels = {"A": rows, "B": rows}
    plot_heatmaps(panels, "a", "b", "loss", tmp_path / "heat.png", title="t", reference=1.0)
    plot_marginals(panels, ["a", "b"], "loss", tmp_path / "marg.png")
    plot_importance({"A": importance(rows, ["a", "b"], "loss")}, tmp_path / "imp.png")
    for name in ("heat", "marg", "imp"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_value_labels_tell_cells_apart_from_each_other_and_the_baseline():
    """Oracle: hand-written labels; the one-digit labels of before all read "0.2"."""
    near = [0.168, 0.169, 0.17, 0.171, 0.172, 0.168]
    assert value_labels(near, reference=0.167) == [
        "0.168", "0.169", "0.17", "0.171", "0.172", "0.168"
    ]  # fmt: skip
    # Two digits already separate these and the baseline; the fewest are used.
    assert value_labels([0.5, 0.25, 12.0], reference=0.167) == ["0.5", "0.25", "12"]
    # Distinct values, one of which would read like the baseline at two digits.
    assert value_labels([0.5, 0.1672], reference=0.167) == ["0.5", "0.1672"]
    # The cap: values equal to four digits share a label; non-finite values are str.
    assert value_labels([1.00001, 1.00002, float("nan")]) == ["1", "1", "nan"]


def test_findings_counts_regions_of_hand_made_rows():
    """Oracle: fractions counted by hand over five hand-made rows (no training)."""

    def row(cell, length, rate, seed, loss, steps, diverged, bias=0.0):
        return {"cell": cell, "length": length, "learning_rate": rate, "seed": seed,
                "forget_bias": bias, "loss": loss, "steps_to_threshold": steps,
                "diverged": diverged, "baseline": 1.0}  # fmt: skip

    main = [
        row("lstm", 50, 0.1, 0, 0.05, 10, False),  # trained, learned
        row("lstm", 50, 0.1, 1, 0.4, None, False, bias=1.0),  # learned only
        row("lstm", 50, 1.0, 0, float("nan"), None, True),  # diverged, blew up
        row("lstm", 50, 1.0, 1, 3.0, 5, True, bias=1.0),  # hit the threshold, then diverged
    ]
    rows = [*main, row("lstm", 100, 0.1, 0, 1.5, None, False), row("rnn", 50, 0.1, 0, 2.5, 1, 0)]
    out = findings(rows, main_length=50, second_axes={"lstm": "forget_bias"}, metric="loss")
    assert out["regions"]["lstm T=50"] == {
        "runs": 4, "trained_fraction": 0.25, "diverged_fraction": 0.5,
        "learned_fraction": 0.5, "blew_up_fraction": 0.5,
        "trained_learning_rates": [0.1], "diverged_learning_rates": [1.0],
        "best": {"learning_rate": 0.1, "forget_bias": 0.0, "seed": 0, "loss": 0.05},
    }  # fmt: skip
    longer = out["regions"]["lstm T=100"]
    assert (longer["runs"], longer["learned_fraction"], longer["blew_up_fraction"]) == (1, 0, 0)
    assert out["regions"]["rnn T=50"]["blew_up_fraction"] == 1.0  # 2.5 > 2 x baseline
    assert out["regions"]["rnn T=50"]["best"] == {"learning_rate": 0.1, "seed": 0, "loss": 2.5}
    # Importance ranks the varying axes at the main T only; one rnn row ranks nothing.
    assert out["importance"] == {
        "lstm": importance(main, ["learning_rate", "forget_bias", "seed"], "loss")
    }
