"""Translation with attention: English number words to digits, with and without attention.

    .venv/bin/python experiments/apps/translation.py --out results/apps/translation
    .venv/bin/python experiments/apps/translation.py --quick --out /tmp/translation

"three hundred and twelve" -> "312" (``rnnlab.tasks.number_words_to_digits``; numbers
from 100 up are hashed into train/validation/test, so test numbers are never seen).
The model is Bahdanau et al. 2015's encoder-decoder (``TrainConfig(model=
"encoder_decoder")``): a bidirectional encoder and a decoder of the same cell, with
additive attention or a fixed context (the encoder's final states), trained with
teacher forcing; each run keeps its best-validation params and is scored by greedy
decoding.  The labels ``gru``, ``lstm``, ``rnn`` are attention models of that cell,
``gru without attention`` the fixed-context GRU.

Non-recurrent baselines, computed in the same run: the input-blind per-position token
distribution (the task's baseline) and one logistic regression per target position
on the flattened one-hot source (``translation.linear_baseline``).

Writes config.json, summary.json (exact match overall and per source length, for
every seed), results.csv, metrics.csv, learning_curves.png, comparison.png,
exact_match_by_length.png (greedy decoding against the number of source words) and
attention.png (attention weights of the best attention model on test numbers).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from rnnlab import cli, runtime
from rnnlab.plots.apps import plot_attention, plot_by_length
from rnnlab.tasks import translation
from rnnlab.train.compare import (
    add_arguments,
    base_config,
    contrast,
    experiment_record,
    parse_arguments,
    print_report,
    seed_claims,
    train_models,
    write_comparison,
)

QUICK = {"cells": ["gru"], "seeds": 1, "steps": 40, "chunk_steps": 20, "hidden_size": 16,
         "max_digits": 3, "linear_train_size": 500}  # fmt: skip
COLUMNS = ("model", "parameters", "test_metric", "test_metric_std", "greedy_exact_match",
           "seeds", "wall_time_s")  # fmt: skip
FIXED = " without attention"


def decoder(result):
    """``decode(params, inputs, lengths) -> (tokens, logits, weights)``: greedy, jitted."""
    network, extras = result.model().encoder_decoder, result.trainer.task.extras
    options = {"max_length": extras["target_steps"], "start_token": extras["bos"],
               "end_token": extras["eos"], "pad_token": extras["pad"]}  # fmt: skip
    return jax.jit(lambda params, inputs, lengths: network.greedy_decode(
        params, inputs, lengths, **options))  # fmt: skip


def greedy_correct(result, batch) -> np.ndarray:
    """``[seeds, N]`` bool: each seed's greedy decoding of ``batch`` is exactly right."""
    decode = decoder(result)
    tokens = jax.vmap(lambda params: decode(params, batch.inputs, batch.lengths)[0])(
        result.best_params
    )
    return np.asarray(translation.sequence_correct(tokens, batch.targets[None]))


def attention_examples(result, batch, count: int = 3):
    """``(weights [U, S], source words, output tokens)`` of test examples of growing length."""
    extras = result.trainer.task.extras
    lengths = np.asarray(batch.lengths)
    distinct = np.unique(lengths)
    chosen = distinct[np.linspace(0, len(distinct) - 1, count).astype(int)]
    rows = np.array([np.flatnonzero(lengths == length)[0] for length in chosen])
    tokens, _, weights = decoder(result)(result.params(), batch.inputs[rows], batch.lengths[rows])
    examples = []
    for index, row in enumerate(rows):
        length = int(lengths[row])
        source = np.asarray(batch.inputs[row, :length]).argmax(-1)
        words = [extras["source_vocabulary"][k] for k in source]
        output = [extras["target_vocabulary"][k] for k in np.asarray(tokens[index])]
        end = output.index("</s>") + 1 if "</s>" in output else len(output)
        examples.append((np.asarray(weights[index, :end, :length]), words, output[:end]))
    return examples


def main(argv=None) -> dict:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    add_arguments(
        parser,
        out="results/apps/translation",
        quick=QUICK,
        seeds=2,
        steps=2500,
        chunk_steps=250,
        batch_size=64,
        hidden_size=64,
        learning_rate=3e-3,
        max_digits=7,
        linear_train_size=5000,
    )
    arguments = parse_arguments(parser, argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start = time.perf_counter()
    base = base_config(
        arguments, "translation", model="encoder_decoder",
        task_options={"max_digits": arguments.max_digits},
    )  # fmt: skip
    configs = {cell: base.replace(cell=cell) for cell in arguments.cells}
    for cell in arguments.cells[-1:]:  # the last cell also without attention (GRU by default)
        configs[cell + FIXED] = base.replace(cell=cell, attention=False)
    results = train_models(
        configs, arguments.seeds, label="translation", compiler_options=arguments.compiler_options
    )
    task = next(iter(results.values())).trainer.task
    test = task.test_set()
    lengths = np.asarray(test.lengths)
    linear = translation.linear_baseline(task, train_size=arguments.linear_train_size)

    by_length = {"linear per-position baseline": {}}
    greedy = {}
    for name, result in results.items():
        correct = greedy_correct(result, test)  # [seeds, N]
        greedy[name] = correct.mean(1)
        by_length[name] = {
            int(n): correct[:, lengths == n].mean(1).tolist() for n in np.unique(lengths)
        }
    by_length["linear per-position baseline"] = {
        int(n): [float(linear["test_correct"][lengths == n].mean())] for n in np.unique(lengths)
    }
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_by_length(
        by_length, out / "exact_match_by_length.png", xlabel="source length (words)",
        ylabel="test exact match (greedy)", title="number words to digits",
    )  # fmt: skip
    attention_models = [r for r in results.values() if r.config.attention]
    best = min(attention_models, key=lambda r: r.history["best_validation_loss"].min())
    plot_attention(
        attention_examples(best, test), out / "attention.png",
        title=f"{best.label} with attention: weights on test numbers",
    )  # fmt: skip

    claims = seed_claims(results, higher_is_better=True)
    claims += [
        contrast(results, cell, cell + FIXED, higher_is_better=True)
        for cell in arguments.cells
        if cell + FIXED in results
    ]
    summary = write_comparison(
        out,
        experiment_record(
            "translation", vars(arguments), configs, task={"name": task.name, **task.describe}
        ),
        results,
        baselines={
            "linear per-position": linear["test_exact_match"],
            "input-blind": task.baseline_metric,
        },  # fmt: skip
        summary={
            "task": task.name,
            "greedy_exact_match": {name: values.tolist() for name, values in greedy.items()},
            "exact_match_by_source_length": by_length,
            "linear_baseline": {k: v for k, v in linear.items() if k != "test_correct"},
            "claims": claims,
            "wall_time_s": time.perf_counter() - start,
        },
        title="number words to digits: exact match",
    )
    for row in summary["models"]:
        row["greedy_exact_match"] = float(np.mean(greedy[row["model"]]))
    print_report(summary, COLUMNS, arguments.out)
    return summary


if __name__ == "__main__":
    main()
