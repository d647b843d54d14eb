"""Music: polyphonic next-frame prediction on Bach chorales, tanh vs GRU vs LSTM at ~20k params.

    .venv/bin/python experiments/apps/music.py --out results/apps/music
    .venv/bin/python experiments/apps/music.py --quick --out /tmp/music

Chung et al. 2014's comparison on music21's Bach chorales as 88-key piano rolls at
eighth notes: every model (recurrent layer and a sigmoid per key) gets the hidden
size whose parameter count is closest to ``--parameters`` (about 20k, as in the
paper).  Loss and metric are the frame-level NLL in nats (REFERENCES); training
draws windows of ``--length`` frames; validation and test are whole chorales.  Each
run keeps its best-validation params.  Baselines, computed in the same run: every
key independent with its training frequency (prior), and each key a two-state Markov
chain of its own previous frame.

The split is music21's 348 distinct chorales shuffled into 244/52/52, **not**
Boulanger-Lewandowski et al.'s 229/76/77 JSB split: the NLLs rank models like the
published ones (Chung et al.: tanh 9.19, GRU 8.54, LSTM 8.67 on JSB) but are not
comparable in value.

A chorale of ``--sample-frames`` frames is then sampled from the model with the best
validation NLL and written as ``sample.png`` (piano roll) and ``sample.mid``.
Writes config.json, summary.json, results.csv, metrics.csv, learning_curves.png,
comparison.png, sample.png and sample.mid.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from rnnlab import cli, runtime
from rnnlab.plots.apps import plot_piano_roll
from rnnlab.tasks import chorales
from rnnlab.train import make_train
from rnnlab.train.compare import (
    add_arguments,
    base_config,
    experiment_record,
    parse_arguments,
    print_report,
    seed_claims,
    train_models,
    write_comparison,
)
from rnnlab.train.sizing import matched_hidden_size

QUICK = {"cells": ["gru"], "seeds": 1, "steps": 40, "chunk_steps": 20, "length": 16,
         "parameters": 2000, "sample_frames": 16}  # fmt: skip
COLUMNS = ("model", "hidden_size", "parameters", "test_metric", "test_metric_std", "seeds",
           "wall_time_s")  # fmt: skip


def main(argv=None) -> dict:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    add_arguments(
        parser,
        out="results/apps/music",
        quick=QUICK,
        seeds=2,
        steps=6000,
        chunk_steps=250,
        batch_size=16,
        learning_rate=3e-3,
        length=128,
        parameters=20_000,
        sample_frames=64,
    )
    arguments = parse_arguments(parser, argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start = time.perf_counter()
    # The hidden size of each cell is matched to --parameters below.
    base = base_config(arguments, "bach_chorales", length=arguments.length)
    task = make_train(base).task
    configs = {}
    for cell in arguments.cells:
        config = base.replace(cell=cell)
        size = matched_hidden_size(config, arguments.parameters, task)
        configs[cell] = config.replace(hidden_size=size)
    results = train_models(
        configs, arguments.seeds, label="music", compiler_options=arguments.compiler_options
    )

    # Sample from the model (and seed) with the lowest validation NLL: selection, not test.
    best = min(results.values(), key=lambda r: r.history["best_validation_loss"].min())
    model, params = best.model(), best.params()
    roll = chorales.generate(
        lambda carry, x: model.step(params, carry, x),
        model.initial_carry(()),
        arguments.sample_frames,
        key=jax.random.key(arguments.seeds),
    )
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    chorales.roll_to_score(roll).write("midi", fp=str(out / "sample.mid"))
    plot_piano_roll(
        roll, out / "sample.png", title=f"sampled from the {best.label} (best validation)"
    )

    summary = write_comparison(
        out,
        experiment_record(
            "music", vars(arguments), configs, task={"name": task.name, **task.describe}
        ),
        results,
        baselines={
            "independent keys (prior)": task.baseline_metric,
            "per-key Markov chain": task.extras["markov_nll"],
        },  # fmt: skip
        summary={
            "task": task.name,
            "split": {
                name: task.extras[f"{name}_size"] for name in ("train", "validation", "test")
            },
            "split_note": "music21 chorales shuffled 244/52/52, not the Boulanger-Lewandowski "
            "JSB split: compare with Chung et al. 2014 in ranking, not in value",
            "chung_2014_jsb_test_nll": {"rnn": 9.19, "gru": 8.54, "lstm": 8.67},
            "claims": seed_claims(results, higher_is_better=False),
            "sample": {
                "model": best.label,
                "frames": int(roll.shape[0]),
                "notes_per_frame": float(roll.sum(1).mean()),
                "training_notes_per_frame": float(
                    np.mean([r.sum(1).mean() for r in chorales.distinct_chorales()[1]])
                ),
            },
            "wall_time_s": time.perf_counter() - start,
        },
        title="Bach chorales: frame NLL (nats), ~20k parameters",
    )
    print_report(summary, COLUMNS, arguments.out)
    return summary


if __name__ == "__main__":
    main()
