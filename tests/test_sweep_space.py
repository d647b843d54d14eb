"""Search spaces, stable ids and CLI sweep specs (rnnlab.sweep.space)."""

import itertools
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab.sweep import (
    choice,
    config_id,
    configurations,
    loggrid,
    loguniform,
    parse_seeds,
    parse_spec,
    product,
    seeds,
    uniform,
)


@given(
    low=st.floats(1e-6, 1.0),
    decades=st.floats(0.5, 5.0),
    n=st.integers(1, 24),
    seed=st.integers(0, 2**16),
)
def test_loguniform_draws_one_per_log_stratum(low, decades, n, seed):
    """Oracle: the definition of stratified sampling: draw k lies in the k-th of n
    equal-width strata of [log low, log high] (up to float rounding)."""
    high = low * 10**decades
    values = loguniform(low, high, n).expand("learning_rate", seed)
    edges = np.linspace(math.log(low), math.log(high), n + 1)
    assert len(values) == n
    for k, value in enumerate(values):
        assert edges[k] - 1e-3 <= math.log(value) <= edges[k + 1] + 1e-3


@given(low=st.floats(-5, 5), width=st.floats(0.1, 10), n=st.integers(1, 16))
def test_uniform_draws_one_per_stratum_and_are_reproducible(low, width, n):
    """Oracle: the stratum definition, and equality of two independent expansions."""
    dim = uniform(low, low + width, n)
    values = dim.expand("x", seed=3)
    edges = np.linspace(low, low + width, n + 1)
    tolerance = 1e-3 * max(1.0, abs(low) + width)
    for k, value in enumerate(values):
        assert edges[k] - tolerance <= value <= edges[k + 1] + tolerance
    assert values == dim.expand("x", seed=3)


def test_random_draws_depend_on_seed_and_name():
    """Oracle: independent streams: changing the seed or the dimension name changes the draws."""
    dim = loguniform(1e-4, 1e-1, 8)
    assert dim.expand("lr", 0) != dim.expand("lr", 1)
    assert dim.expand("lr", 0) != dim.expand("other", 0)


def test_loggrid_is_geometric():
    """Oracle: numpy.geomspace, endpoints included."""
    np.testing.assert_allclose(loggrid(1e-3, 1e-1, 3).expand("x"), [1e-3, 1e-2, 1e-1])


@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4),
)
def test_product_size_and_ids_are_unique(sizes):
    """Oracle: the size of a cartesian product is the product of the axis sizes, and
    every configuration's values appear exactly once (itertools.product)."""
    axes = {f"p{i}": list(range(size)) for i, size in enumerate(sizes)}
    configs = configurations(product(**axes))
    assert len(configs) == math.prod(sizes)
    assert len({c["id"] for c in configs}) == len(configs)
    expected = set(itertools.product(*axes.values()))
    assert {tuple(c[name] for name in axes) for c in configs} == expected


def test_union_keeps_shared_configurations_once_and_shares_draws():
    """Oracle: set union: a configuration in both products appears once; a random axis
    with the same name and spec gives the same values in both products."""
    lr = loguniform(1e-4, 1e-1, 4)
    space = product(cell="lstm", learning_rate=lr, forget_bias=[0.0, 1.0]) | product(
        cell=["lstm", "gru"], learning_rate=lr, forget_bias=1.0
    )
    configs = configurations(space)
    assert len(configs) == 4 * 2 + 4  # the lstm, forget_bias=1 configurations repeat
    by_cell = {
        cell: {c["learning_rate"] for c in configs if c["cell"] == cell} for cell in ("lstm", "gru")
    }
    assert by_cell["lstm"] == by_cell["gru"]


@given(st.permutations(["cell", "learning_rate", "seed", "forget_bias"]))
def test_config_id_ignores_key_order(order):
    """Oracle: a configuration is a mapping; key order is not part of its identity."""
    config = {"cell": "lstm", "learning_rate": 3e-3, "seed": 2, "forget_bias": 1.0}
    assert config_id({k: config[k] for k in order}) == config_id(config)


def test_config_id_changes_with_values_and_context():
    """Oracle: distinct inputs (a value, or the hashed base config) give distinct ids."""
    config = {"cell": "lstm", "learning_rate": 3e-3}
    assert config_id(config) != config_id({**config, "learning_rate": 3.1e-3})
    assert config_id(config, {"steps": 100}) != config_id(config, {"steps": 200})


def test_config_id_is_stable_across_processes():
    """Oracle: a fresh interpreter with a different hash seed computes the same ids
    (so resuming in a new process finds its finished rows)."""
    configs = configurations(product(cell=["lstm", "gru"], learning_rate=loguniform(1e-3, 1, 3)))
    code = (
        "from rnnlab.sweep.space import *\n"
        "cs = configurations(product(cell=['lstm', 'gru'], learning_rate=loguniform(1e-3, 1, 3)))\n"
        "print(' '.join(c['id'] for c in cs))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "JAX_PLATFORMS": "cpu"}
    output = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert output == [c["id"] for c in configs]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,1,2", (0, 1, 2)),
        ("lstm,gru, rnn", ("lstm", "gru", "rnn")),
        ("3e-3", (3e-3,)),
        ("0.5,true", (0.5, True)),
    ],
)
def test_parse_list_specs(text, expected):
    """Oracle: the literal values written in the spec."""
    assert parse_spec(text, "--x") == choice(expected)


def test_parse_ranged_specs_round_trip():
    """Oracle: the constructor called with the spec's numbers, and describe() inverting parsing."""
    assert parse_spec("loguniform:1e-4:1e-1:16", "--learning-rate") == loguniform(1e-4, 1e-1, 16)
    assert parse_spec("uniform:0:2:5", "--fb") == uniform(0, 2, 5)
    assert parse_spec("loggrid:0.5:2:3") == loggrid(0.5, 2, 3)
    for dim in (loguniform(1e-4, 1e-1, 16), uniform(-1, 2, 3), choice([0, 1, 2])):
        assert parse_spec(dim.describe()) == dim


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty sweep spec"),
        ("loguniform:1e-4:1e-1", "loguniform:LOW:HIGH:N"),
        ("loguniform:0:1e-1:4", "low > 0"),
        ("loguniform:1e-1:1e-4:4", "low < high"),
        ("uniform:a:1:4", "'a'"),
        ("uniform:0:1:2.5", "whole number"),
        ("uniform:0:1:0", "n >= 1"),
        ("logunifrom:1:2:3", "unknown sweep kind"),
        ("0,,1", "empty item"),
        ("1,1", "repeated"),
    ],
)
def test_bad_specs_raise_clear_errors(text, message):
    """Oracle: each malformed spec is rejected, and the error names the option and the problem."""
    with pytest.raises(ValueError, match="--learning-rate") as error:
        parse_spec(text, "--learning-rate")
    assert message in str(error.value)


def test_parse_seeds():
    """Oracle: a count means range(count); a list is taken literally; other forms are errors."""
    assert parse_seeds("4") == seeds(4) == choice([0, 1, 2, 3])
    assert parse_seeds("0,5,7") == choice([0, 5, 7])
    for bad in ("0", "-1,2", "1.5", "uniform:0:1:3"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


def test_experiment_cli_rejects_bad_specs_before_training(capsys):
    """Oracle: the CLI contract: a malformed option exits with status 2 and one
    ``error: --flag: ...`` line naming it."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / "sweep.py"
    spec = importlib.util.spec_from_file_location("sweep_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for argv, option in [
        (["--learning-rate", "loguniform:1e-4:1e-1"], "--learning-rate"),
        (["--axis", "forget_bias=0,,2"], "--axis"),
        (["--axis", "gru:forget_bias=0,1"], "--axis.*forget_bias"),
        (["--seeds", "two"], "--seeds"),
        (["--cells", "lstm,tcn"], "--cells"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            module.build_space(module.parse_args(argv))
        assert exit_.value.code == 2
        message = capsys.readouterr().err
        assert re.match(f"error: {option}", message) and message.count("\n") == 1, message
