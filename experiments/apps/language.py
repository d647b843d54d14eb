"""Language: character-level models of Shakespeare, in bits per character, with samples.

    .venv/bin/python experiments/apps/language.py --out results/apps/language
    .venv/bin/python experiments/apps/language.py --quick --out /tmp/language
    # sample from a saved run (any cell's folder), at any temperature:
    .venv/bin/python experiments/apps/language.py --sample-from results/apps/language/lstm \\
        --temperature 0.7 --chars 600 --prompt "ROMEO:"

The text is the shipped public-domain Shakespeare (the Sonnets and nine plays, about
1.15M characters): the first 90% trains, the next 5% validates, the last 5% (the end
of Twelfth Night) tests.  Each cell trains with the resumable runner
(``rnnlab.train.run``: checkpoints, ``metrics.jsonl``, resume by re-running) with
stateful truncated BPTT: ``--batch-size`` streams read in consecutive windows of
``--length`` characters, the carry passed on between windows and the gradient cut at
their boundaries (``TrainConfig(stateful=True)``); its best-validation params are
kept and reported.  Baselines, computed in the same run on the test windows: the
training unigram and bigram (add-one smoothed).

Writes, besides one runner folder per cell (``<out>/<cell>/``), config.json,
summary.json (bits per character of every cell at its best-validation params, the
baselines), results.csv, metrics.csv, learning_curves.png, comparison.png and
samples.txt (temperature samples from the cell with the best validation loss).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

from rnnlab import cli, io, runtime
from rnnlab.tasks import generate
from rnnlab.train import TrainConfig, restore_state, run
from rnnlab.train.compare import (
    add_arguments,
    base_config,
    experiment_record,
    parse_arguments,
    print_report,
    result_from_run,
    seed_claims,
    write_comparison,
)

QUICK = {"cells": ["gru"], "steps": 20, "chunk_steps": 10, "hidden_size": 16, "length": 32,
         "sample_chars": 80}  # fmt: skip
COLUMNS = ("model", "hidden_size", "parameters", "test_metric", "validation_loss", "steps",
           "wall_time_s")  # fmt: skip
TEMPERATURES = (0.5, 0.8, 1.0)


def sample(out, *, temperature: float, num_chars: int, prompt: str, seed: int = 0) -> str:
    """Characters sampled after ``prompt`` from the best-validation params saved in ``out``
    (a runner folder: ``config.json`` and ``checkpoints/``)."""
    from rnnlab.train import make_train

    trainer = make_train(TrainConfig.from_dict(io.read_json(Path(out) / "config.json")["config"]))
    state = restore_state(out, trainer)
    if state is None:
        raise ValueError(f"--sample-from {out}: no checkpoint in {out}/checkpoints")
    model = trainer.model(trainer.default_hparams())
    return generate(
        lambda carry, x: model.step(state.best_params, carry, x),
        model.initial_carry(()),
        trainer.task.extras["vocabulary"],
        prompt,
        num_chars,
        temperature,
        key=jax.random.key(seed),
    )


def samples_text(out, *, num_chars: int, seed: int) -> str:
    """``samples.txt``: one sample per temperature, each after a newline prompt."""
    parts = []
    for index, temperature in enumerate(TEMPERATURES):
        text = sample(
            out, temperature=temperature, num_chars=num_chars, prompt="\n", seed=seed + index
        )
        parts.append(f"=== temperature {temperature} ===\n{text}\n")
    return "\n".join(parts)


def main(argv=None) -> dict | None:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    add_arguments(
        parser,
        out="results/apps/language",
        quick=QUICK,
        seeds=1,
        steps=2000,
        chunk_steps=200,
        hidden_size=128,
        batch_size=32,
        learning_rate=3e-3,
        length=100,
        sample_chars=500,
    )
    parser.add_argument("--sample-from", metavar="DIR", help="only sample from a saved run")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--chars", type=int, default=500)
    parser.add_argument("--prompt", default="\n")
    arguments = parse_arguments(parser, argv)
    if arguments.sample_from:
        try:
            text = sample(
                arguments.sample_from,
                temperature=arguments.temperature,
                num_chars=arguments.chars,
                prompt=arguments.prompt,
            )
        except ValueError as error:
            parser.error(str(error))
        print(arguments.prompt + text)
        return None
    if arguments.seeds != 1:
        parser.error("--seeds: the language study runs one seed per cell (a runner per cell)")
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start = time.perf_counter()
    out = Path(arguments.out)
    configs, results = {}, {}
    for cell in arguments.cells:
        # Stateful truncated BPTT: each step reads the next --length characters of
        # --batch-size streams, the carry crosses windows (reset at document starts), and
        # the gradient stops at window boundaries.
        configs[cell] = base_config(
            arguments, "shakespeare", length=arguments.length, cell=cell, stateful=True
        )
        outcome = run(configs[cell], out / cell, progress=True)
        results[cell] = result_from_run(cell, outcome, out / cell)
    task = next(iter(results.values())).trainer.task
    best = min(results.values(), key=lambda r: r.history["best_validation_loss"].min())
    samples = samples_text(out / best.label, num_chars=arguments.sample_chars, seed=0)
    io.write_text(out / "samples.txt", f"# sampled from {best.label} (best validation)\n{samples}")
    summary = write_comparison(
        out,
        experiment_record(
            "language", vars(arguments), configs, task={"name": task.name, **task.describe}
        ),
        results,
        baselines={"unigram": task.baseline_metric, "bigram": task.extras["bigram_bits"]},
        summary={
            "task": task.name,
            "split_characters": task.extras["split_characters"],
            "gradient": "stateful truncated BPTT: the carry crosses consecutive --length "
            "windows, the gradient stops at their boundaries",
            "claims": seed_claims(results, higher_is_better=False),
            "samples_from": best.label,
            "wall_time_s": time.perf_counter() - start,
        },
        title="Shakespeare: test bits per character",
    )
    print_report(summary, COLUMNS, arguments.out)
    print(samples)
    return summary


if __name__ == "__main__":
    main()
