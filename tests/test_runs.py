"""Runs as objects: load, evaluate, compare and sample, from the library and the commands.

Oracles: the runner's own final evaluation (``summary.json``) and metrics; the trainer's
``evaluate`` on a task built at another length; the character vocabulary.
"""

import json

import jax
import numpy as np
import pytest
from conftest import load_experiment

import rnnlab
from rnnlab import runs
from rnnlab.tasks import make_task
from rnnlab.train import TrainConfig, make_train, run

TINY = dict(task="adding", length=8, cell="gru", hidden_size=8, batch_size=8, steps=6,
            chunk_steps=3, eval_batch_size=32)  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run(TrainConfig(**TINY), out, progress=False, plots=False)
    return out


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("text")
    config = TrainConfig(task="char_lm", length=12, cell="lstm", hidden_size=8, batch_size=4,
                         steps=4, chunk_steps=2, eval_batch_size=8)  # fmt: skip
    run(config, out, progress=False, plots=False)
    return out


def test_load_gives_config_metrics_summary_and_state(finished):
    loaded = runs.load(finished)
    assert loaded.config == TrainConfig(**TINY) and loaded.finished
    steps, losses = loaded.curve("test_loss")
    np.testing.assert_array_equal(steps, [3, 6])
    assert losses[-1] == pytest.approx(loaded.summary["final_test_loss"])
    assert int(loaded.state().step) == 6 and int(loaded.state(step=3).step) == 3


def test_evaluate_reproduces_the_run_and_scores_other_lengths(finished):
    loaded = runs.load(finished)
    same = loaded.evaluate()
    assert same["loss"] == pytest.approx(loaded.summary["final_test_loss"], rel=1e-5)
    longer = loaded.evaluate(length=20, split="fresh", seed=3)
    # Oracle: the trained params through a trainer built at T=20 on the same sequences.
    trainer = make_train(TrainConfig(**{**TINY, "length": 20}))
    task = make_task("adding", 20)
    batch = task.sample(jax.random.key(3), TINY["eval_batch_size"])
    outputs = trainer.model(trainer.default_hparams()).apply(loaded.state().params, batch.inputs)
    assert longer["loss"] == pytest.approx(float(task.loss(outputs, batch)), rel=1e-5)
    assert longer["length"] == 20
    with pytest.raises(ValueError, match="validation"):
        loaded.evaluate(split="validation")
    with pytest.raises(ValueError, match="split"):
        loaded.evaluate(split="train")


def test_commands(finished, text_run, tmp_path, capsys):
    evaluate = load_experiment("evaluate")
    assert evaluate.main([str(finished), "--length", "16", "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["length"] == 16
    capsys.readouterr()
    compare = load_experiment("compare")
    png = tmp_path / "compare.png"
    assert compare.main([str(finished), str(text_run), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads(capsys.readouterr().out)
    assert table[finished.name]["final"] == pytest.approx(
        runs.load(finished).summary["final_test_loss"]
    )
    sample = load_experiment("sample")
    capsys.readouterr()
    assert sample.main([str(text_run), "--chars", "30", "--prompt", "(("]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    vocabulary = runs.load(text_run).trainer.task.extras["vocabulary"]
    assert text.startswith("((") and len(text) == 32 and set(text) <= set(vocabulary)
    with pytest.raises(SystemExit):
        sample.main([str(finished)])  # not a character model


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        runs.load(tmp_path)
    rnnlab.io.write_json(tmp_path / "config.json", {"args": {}})
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(ValueError, match="a sweep, not a training run"):
        runs.load(tmp_path)
