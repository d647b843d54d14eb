"""Time series: multi-step sunspot forecasts with bands, and ECG anomalies by forecast error.

    .venv/bin/python experiments/apps/time_series.py --out results/apps/time_series
    .venv/bin/python experiments/apps/time_series.py --quick --out /tmp/time_series

**Sunspots** (yearly, 1700-2008, statsmodels): from each year, forecast the next
``--horizon`` years; training 1700-1900, validation 1901-1946, test 1947-2008.
RNN, LSTM and GRU (best-validation params per seed) against statsmodels' seasonal
naive (11-year cycle) and ARIMA(2,0,0) (Yule's AR(2)), fitted on the training years in
this run, and persistence.  Scores are on each test window's last step (the full
``--length``-year context).  The networks' 95% band is split-conformal: per horizon,
the 95% quantile of the absolute validation residuals; its test coverage is reported
beside ARIMA's own 95% interval.

**ECG anomaly** (MIT-BIH excerpt shipped in sktime, one labelled irregular beat in the
test segment): each network forecasts ``--ecg-horizon`` samples ahead at every step;
Malhotra et al. 2015's Gaussian on the validation errors scores every test point and
every window of ``--window`` points; does the top-scored window hit the anomaly?
Non-recurrent baselines through the same scoring: persistence and a least-squares
AR(``--ar-order``) forecaster.

Writes config.json, summary.json, results.csv and metrics.csv (both studies),
sunspots_curves.png, sunspots_comparison.png, sunspots_forecasts.png,
sunspots_horizons.png, ecg_curves.png, ecg_comparison.png and ecg_scores.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from rnnlab import cli, io, runtime
from rnnlab.plots import figure, save
from rnnlab.plots.apps import plot_anomaly, plot_comparison, plot_curves, plot_forecasts
from rnnlab.tasks import anomaly, forecasting
from rnnlab.train.compare import (
    add_arguments,
    base_config,
    csv_row,
    experiment_record,
    history_rows,
    parse_arguments,
    print_report,
    seed_claims,
    summary_rows,
    train_models,
    write_record,
)

QUICK = {"cells": ["gru"], "seeds": 1, "steps": 40, "chunk_steps": 20, "hidden_size": 8,
         "ecg_length": 32, "ecg_steps": 40}  # fmt: skip
COLUMNS = ("model", "parameters", "test_metric", "test_metric_std", "last_step_mse", "seeds",
           "wall_time_s")  # fmt: skip
ECG_COLUMNS = ("model", "test_metric", "top_window_hits", "point_auc", "seeds", "wall_time_s")
COVERAGE = 0.95


def predictions(result, batch) -> np.ndarray:
    """``[seeds, N, T, horizon]``: each seed's selected params applied to ``batch``."""
    model = result.model()
    apply = jax.jit(jax.vmap(lambda params: model.apply(params, batch.inputs, batch.lengths)))
    return np.asarray(apply(result.best_params))


def sunspots(arguments, out: Path) -> dict:
    base = base_config(
        arguments, "sunspots", length=arguments.length,
        task_options={"horizon": arguments.horizon, "validation_fraction": 0.15},
    )  # fmt: skip
    configs = {cell: base.replace(cell=cell) for cell in arguments.cells}
    results = train_models(
        configs, arguments.seeds, label="sunspots", compiler_options=arguments.compiler_options
    )
    task = next(iter(results.values())).trainer.task
    test, validation = task.test_set(), task.validation_set()
    targets = np.asarray(test.targets)[:, -1]  # [N, horizon] at the full-context step
    statistical = forecasting.forecast_baselines(task, interval=COVERAGE)
    forecasts = {
        "seasonal naive": statistical["seasonal_naive"][:, -1],
        "ARIMA(2,0,0)": statistical["arima"][:, -1],
        "persistence": np.repeat(np.asarray(test.inputs)[:, -1], task.output_size, axis=-1),
        "training mean": np.zeros_like(targets),
    }
    per_horizon = {name: np.mean((f - targets) ** 2, 0) for name, f in forecasts.items()}
    bands = {}
    network = {}
    for name, result in results.items():
        mean = predictions(result, test)[:, :, -1]  # [seeds, N, horizon]
        residuals = np.abs(predictions(result, validation) - np.asarray(validation.targets))
        half_width = np.quantile(residuals.reshape(result.seeds, -1, task.output_size), COVERAGE, 1)
        network[name] = mean
        per_horizon[name] = np.mean((mean - targets) ** 2, 1).mean(0)
        inside = np.abs(mean - targets) <= half_width[:, None, :]
        bands[name] = {"coverage": float(inside.mean()), "half_width": half_width.mean(0).tolist()}
    arima_inside = (statistical["arima_lower"][:, -1] <= targets) & (
        targets <= statistical["arima_upper"][:, -1]
    )
    bands["ARIMA(2,0,0)"] = {"coverage": float(arima_inside.mean())}

    rows = summary_rows(results)
    for row in rows:
        row["last_step_mse"] = float(per_horizon[row["model"]].mean())
    baselines = {name: float(per_horizon[name].mean()) for name in forecasts}
    best = min(results.values(), key=lambda r: r.history["best_validation_loss"].min())
    _plot_sunspots(task, best, network[best.label], bands, statistical, per_horizon, out)
    plot_curves(results, out / "sunspots_curves.png", metric_name="mse (all steps)")
    plot_comparison(rows, out / "sunspots_comparison.png", metric_name="mse, all steps",
                    title="sunspots: test MSE (standardized)")  # fmt: skip
    return {
        "configs": configs,
        "rows": rows,
        "histories": history_rows(results),
        "summary": {
            "task": {"name": task.name, **task.describe},
            "metric": "mse (standardized units); last_step_mse: at each test window's last step",
            "models": rows,
            "baselines_last_step_mse": baselines,
            "mse_per_horizon": {name: v.tolist() for name, v in per_horizon.items()},
            "bands_95": bands,
            "claims": seed_claims(results, higher_is_better=False),
        },
    }


def _plot_sunspots(task, best, mean, bands, statistical, per_horizon, out: Path) -> None:
    """The test years with forecasts of the best network and ARIMA every few origins."""
    std, center = task.extras["std"], task.extras["mean"]
    series = task.extras["series"] * std + center
    years = 1700 + np.arange(len(series))
    starts = task.extras["split_starts"]
    steps, horizon = task.length, task.output_size
    origins = np.arange(0, mean.shape[1], max(1, horizon))  # non-overlapping forecasts
    times = starts["test"] + steps - 1 + origins[:, None] + 1 + np.arange(horizon)
    network = mean[best.best_seed][origins] * std + center
    half = np.asarray(bands[best.label]["half_width"]) * std
    arima = {k: statistical[k][:, -1][origins] * std + center
             for k in ("arima", "arima_lower", "arima_upper")}  # fmt: skip
    plot_forecasts(
        years,
        series,
        {
            f"{best.label} (95% conformal band)": (
                1700 + times,
                network,
                network - half,
                network + half,
            ),
            "ARIMA(2,0,0) (95% interval)": (
                1700 + times,
                arima["arima"],
                arima["arima_lower"],
                arima["arima_upper"],
            ),
        },  # fmt: skip
        out / "sunspots_forecasts.png",
        split_starts={"validation": 1700 + starts["validation"], "test": 1700 + starts["test"]},
        title=f"sunspots: {horizon}-year forecasts from test origins",
        ylabel="yearly mean sunspot number",
    )
    fig, axis = figure(figsize=(6.5, 3.8))
    for name, values in per_horizon.items():
        axis.plot(np.arange(1, horizon + 1), values, "o-", ms=3, label=name)
    axis.set(xlabel="years ahead", ylabel="test MSE (standardized)", title="error by horizon")
    axis.legend(fontsize=8)
    save(fig, out / "sunspots_horizons.png")


def ecg(arguments, out: Path) -> dict:
    base = base_config(
        arguments, "ecg_anomaly", length=arguments.ecg_length, steps=arguments.ecg_steps,
        task_options={"horizon": arguments.ecg_horizon},
    )  # fmt: skip
    configs = {cell: base.replace(cell=cell) for cell in arguments.cells}
    results = train_models(
        configs, arguments.seeds, label="ecg", compiler_options=arguments.compiler_options
    )
    task = next(iter(results.values())).trainer.task
    validation, test = task.validation_set(), task.test_set()
    horizon, window = task.output_size, arguments.window
    reports = {}
    for name, result in results.items():
        pairs = zip(predictions(result, validation)[:, 0], predictions(result, test)[:, 0],
                    strict=True)  # fmt: skip
        reports[name] = [anomaly.score_forecasts(task, v, t, window) for v, t in pairs]
    values = {"validation": task.extras["validation_values"], "test": task.extras["test_values"]}
    train = _ecg_training_values(task)
    forecasters = {
        "persistence": {k: anomaly.persistence_forecasts(v, horizon) for k, v in values.items()},
        f"AR({arguments.ar_order})": {
            k: anomaly.autoregressive_forecasts(train, v, order=arguments.ar_order, horizon=horizon)
            for k, v in values.items()
        },
    }
    for name, forecast in forecasters.items():
        reports[name] = [anomaly.score_forecasts(task, forecast["validation"], forecast["test"],
                                                 window)]  # fmt: skip
    rows = summary_rows(results)
    for row in rows:
        row["top_window_hits"] = float(
            np.mean([r["top_window_hits"] for r in reports[row["model"]]])
        )
        row["point_auc"] = float(np.mean([r["point_auc"] for r in reports[row["model"]]]))
    baselines = {}
    for name in forecasters:
        report = reports[name][0]
        baselines[name] = {"top_window_hits": report["top_window_hits"],
                           "point_auc": report["point_auc"]}  # fmt: skip
    best = min(results.values(), key=lambda r: r.history["best_validation_loss"].min())
    shown = {best.label: reports[best.label][best.best_seed],
             f"AR({arguments.ar_order})": reports[f"AR({arguments.ar_order})"][0]}  # fmt: skip
    plot_anomaly(
        task.extras["test_values"],
        task.extras["test_labels"],
        {name: report["point_scores"] for name, report in shown.items()},
        {name: report["top_window_start"] for name, report in shown.items()},
        window,
        out / "ecg_scores.png",
        offset=horizon,
        title="ECG test segment: labelled anomaly (red) and top-scored windows (green)",
    )
    plot_curves(results, out / "ecg_curves.png", metric_name="forecast mse")
    plot_comparison(rows, out / "ecg_comparison.png", metric_name="forecast mse",
                    title="ECG: test forecast MSE (standardized)")  # fmt: skip
    chance = reports[next(iter(results))][0]["chance_of_hit"]
    return {
        "configs": configs,
        "rows": rows,
        "histories": history_rows(results),
        "summary": {
            "task": {"name": task.name, **task.describe},
            "window": window,
            "chance_of_hit": chance,
            "models": rows,
            "per_seed": {
                name: [{k: v for k, v in r.items() if not isinstance(v, np.ndarray)} for r in runs]
                for name, runs in reports.items()
            },  # fmt: skip
            "baselines": baselines,
            "claims": seed_claims(results, higher_is_better=False),
        },
    }


def _ecg_training_values(task) -> np.ndarray:
    """The standardized training part of the ECG (what the networks trained on)."""
    values, _ = anomaly.load_ecg()
    start = task.extras["split_starts"]["validation"]
    return (values[:start] - task.extras["mean"]) / task.extras["std"]


def main(argv=None) -> dict:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    add_arguments(
        parser,
        out="results/apps/time_series",
        quick=QUICK,
        seeds=3,
        steps=1500,
        chunk_steps=100,
        hidden_size=32,
        batch_size=32,
        learning_rate=3e-3,
        length=20,
        horizon=8,
        ecg_length=128,
        ecg_horizon=4,
        ecg_steps=1500,
        window=64,
        ar_order=16,
    )
    arguments = parse_arguments(parser, argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start = time.perf_counter()
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = {"sunspots": sunspots(arguments, out), "ecg": ecg(arguments, out)}
    configs = {f"{study} {name}": config for study, parts in studies.items()
               for name, config in parts["configs"].items()}  # fmt: skip
    write_record(out, experiment_record("time_series", vars(arguments), configs))
    io.write_csv(out / "results.csv", [{"study": study, **csv_row(row)} for study, parts in
                                       studies.items() for row in parts["rows"]])  # fmt: skip
    io.write_csv(out / "metrics.csv", [{"study": study, **row} for study, parts in
                                       studies.items() for row in parts["histories"]])  # fmt: skip
    summary = io.to_jsonable({study: parts["summary"] for study, parts in studies.items()})
    summary["wall_time_s"] = time.perf_counter() - start
    io.write_json(out / "summary.json", summary)
    print_report({"models": summary["sunspots"]["models"],
                  "baselines": summary["sunspots"]["baselines_last_step_mse"],
                  "claims": summary["sunspots"]["claims"],
                  "wall_time_s": summary["wall_time_s"]}, COLUMNS, f"{out} (sunspots)")  # fmt: skip
    print("95% band coverage on test:", summary["sunspots"]["bands_95"])
    print_report({"models": summary["ecg"]["models"], "baselines": {
        f"{name} top-window hit": b["top_window_hits"] for name, b in
        summary["ecg"]["baselines"].items()}, "claims": summary["ecg"]["claims"],
        "wall_time_s": summary["wall_time_s"]}, ECG_COLUMNS, f"{out} (ecg)")  # fmt: skip
    print(f"chance that a random {arguments.window}-point window hits: "
          f"{summary['ecg']['chance_of_hit']:.3f}")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
