"""``rnnlab.gradients`` against independent truths.

Oracles:

- BPTT: ``jax.grad`` of a hand-stepped Python loop of ``cell.step`` (resets and carried
  state by hand), in float64 to 1e-10 and float32 to 1e-5.
- TBPTT(k1, k2): the same hand loop, one window at a time, each started from a carry
  cut with ``stop_gradient`` (and, for k1 = k2, the single loop with ``stop_gradient``
  at every multiple of k1), over a whole stream fed to the estimator chunk by chunk.
- RTRL: equals the BPTT oracle.  SnAp-1: the dense masked RTRL recursion in NumPy on
  Jacobians from ``jax.jacobian``.  UORO: the mean of many independent estimates is
  within a Monte-Carlo bound (from the sample variance) of the exact gradient.
- Diagonal RTRL: a NumPy transcription of the sensitivity recursion of a gated
  diagonal recurrence with hand-derived derivatives, and BPTT on an LRU-like complex one.
- Pascanu's Omega: hand NumPy values on linear RNNs (including the skipped terms), its
  code's constant-error gradient by hand, and central finite differences in float64.

Everything runs under strict dtype promotion; cells and estimators are cached so that
every jitted function compiles once per shape.
"""

import functools
import math
import statistics
from typing import NamedTuple

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import gradients
from rnnlab.cells import Cell, LinearRecurrence
from rnnlab.gradients import Chunk

HIDDEN, FEATURES, BATCH = 3, 2, 2

#: Compilation dominates these tests and XLA's backend optimizations only lengthen it;
#: both sides of every comparison are exact to rounding either way.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def dtype_name(dtype) -> str:
    return np.dtype(dtype).name


@functools.cache
def make_cell(name: str, dtype: str = "float32") -> Cell:
    options = dict(bias_init="uniform", param_dtype=jnp.dtype(dtype))
    if name == "rnn":
        return rnnlab.rnn(HIDDEN, recurrent_init="uniform", **options)
    if name == "lstm":
        return rnnlab.lstm(HIDDEN, **options)
    return rnnlab.gru(HIDDEN, **options)


def step_loss(params, y, data):
    """A weighted squared error of a linear readout: one example, one step."""
    prediction = y @ params["readout"]["weight"] + params["readout"]["bias"]
    return data["weight"] * 0.5 * jnp.sum(jnp.square(prediction - data["target"]))


@functools.cache
def estimator(cell_name: str, dtype: str, spec: str) -> gradients.Estimator:
    return gradients.make_estimator(spec, make_cell(cell_name, dtype), step_loss)


@functools.cache
def jitted_update(cell_name: str, dtype: str, spec: str):
    return fast_jit(estimator(cell_name, dtype, spec).update)


class Problem(NamedTuple):
    params: dict
    carry: object  # a non-zero initial carry [*batch, ...]
    chunk: Chunk


def normal(rng, shape, dtype):
    return jnp.asarray(rng.standard_normal(shape), dtype)


def problem(cell: Cell, batch_shape, steps, seed, dtype, reset_rate=0.2) -> Problem:
    rng = np.random.default_rng(seed)
    # Only the shapes of the cell's init: tracing it compiles nothing.
    shapes = jax.eval_shape(lambda key: cell.init(key, FEATURES), jax.random.key(seed))
    leaves, treedef = jax.tree.flatten(shapes)
    cell_params = treedef.unflatten([normal(rng, leaf.shape, dtype) * 0.7 for leaf in leaves])
    readout = {"weight": normal(rng, (HIDDEN, 2), dtype), "bias": normal(rng, (2,), dtype)}
    template = jax.eval_shape(lambda: cell.initial_carry(batch_shape))
    carry = jax.tree.map(lambda a: normal(rng, a.shape, dtype), template)
    data = {
        "weight": jnp.asarray(rng.uniform(size=(*batch_shape, steps)), dtype),
        "target": normal(rng, (*batch_shape, steps, 2), dtype),
    }
    resets = jnp.asarray(rng.uniform(size=(*batch_shape, steps)) < reset_rate)
    chunk = Chunk(normal(rng, (*batch_shape, steps, FEATURES), dtype), data, resets)
    return Problem({"cell": cell_params, "readout": readout}, carry, chunk)


def where(flag, on_true, on_false):
    return jax.tree.map(
        lambda a, b: jnp.where(flag.reshape(flag.shape + (1,) * (a.ndim - flag.ndim)), a, b),
        on_true,
        on_false,
    )


def hand_loss(cell, params, carry, chunk, windows=None):
    """The oracle: a Python loop of ``cell.step``; mean over examples, sum over steps.

    ``windows``: ``[(start, first_loss, stop), ...]``: for each, the loop restarts at
    ``start`` from the carry there cut with ``stop_gradient``, and adds the losses of
    steps ``first_loss..stop-1``.  ``None`` is one window over the whole chunk.
    """
    inputs, data, resets = chunk
    batch_shape, steps = inputs.shape[:-2], inputs.shape[-2]
    initial = cell.initial_carry(batch_shape)
    windows = [(0, 0, steps)] if windows is None else windows

    def run(c, t):
        c = where(resets[..., t], initial, c)
        return cell.step(params["cell"], c, inputs[..., t, :])

    before, c = [], carry  # the carry each step starts from, without gradient
    for t in range(steps):
        before.append(c)
        c = run(jax.lax.stop_gradient(c), t)[0]
    per_example = functools.partial(step_loss, params)
    for _ in batch_shape:
        per_example = jax.vmap(per_example)
    total = 0.0
    for start, first_loss, stop in windows:
        c = jax.lax.stop_gradient(before[start]) if start else carry
        for t in range(start, stop):
            c, y = run(c, t)
            if t >= first_loss:
                data_t = jax.tree.map(lambda a, t=t: jnp.take(a, t, axis=len(batch_shape)), data)
                total = total + jnp.sum(per_example(y, data_t))
    return total / math.prod(batch_shape)


def truncation_windows(steps, k1, k2):
    """TBPTT(k1, k2) over ``steps`` from the stream's start: ``(start, first_loss, stop)``."""
    return [(max(end - k2, 0), end - k1, end) for end in range(k1, steps + 1, k1)]


def hand_gradient(cell_name, dtype, windows=None):
    """``value_and_grad`` of :func:`hand_loss`, run eagerly: its operations compile once
    per shape and serve every test, where a jitted loop would compile per window set."""
    cell = make_cell(cell_name, dtype)
    return jax.value_and_grad(lambda p, c, chunk: hand_loss(cell, p, c, chunk, windows))


def assert_tree_close(actual, expected, rtol, atol_scale=None):
    """``|a - e| <= rtol |e| + atol`` leaf by leaf, ``atol = rtol * max |e|`` overall."""
    scale = max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(expected))
    atol = rtol * scale if atol_scale is None else atol_scale
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol),
        actual,
        expected,
    )


def run_estimator(cell_name, dtype, spec, prob: Problem, key=None):
    est = estimator(cell_name, dtype, spec)
    batch_shape = prob.chunk.inputs.shape[:-2]
    state = est.init(prob.params, batch_shape, carry=prob.carry, key=key)
    return jitted_update(cell_name, dtype, spec)(prob.params, state, prob.chunk)


# --------------------------------------------------------------------------------------
# BPTT and RTRL
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_bptt_and_rtrl_equal_the_hand_loop_in_float64(cell_name, x64):
    """Oracle: ``jax.grad`` of the hand loop (resets, a carried non-zero carry), to 1e-10.
    (The tanh RNN: :func:`test_two_batch_axes` and the TBPTT tests.)"""
    prob = problem(make_cell(cell_name, "float64"), (BATCH,), 6, seed=1, dtype=jnp.float64)
    loss, expected = hand_gradient(cell_name, "float64")(prob.params, prob.carry, prob.chunk)
    for spec in ("bptt", "rtrl"):
        got_loss, grads, state = run_estimator(cell_name, "float64", spec, prob)
        np.testing.assert_allclose(got_loss, loss, rtol=1e-12)
        assert_tree_close(grads, expected, rtol=1e-10)
    # The final carry is the hand loop's, so the next chunk continues the stream.
    _, _, bptt_state = run_estimator(cell_name, "float64", "bptt", prob)
    assert_tree_close(state.carry, bptt_state.carry, rtol=1e-12)


@pytest.mark.parametrize("cell_name", ["rnn"])
def test_rtrl_equals_bptt_in_float32(cell_name):
    """Oracle: the float32 BPTT estimator (equal to the hand loop in float64 above); 1e-5."""
    prob = problem(make_cell(cell_name), (BATCH,), 6, seed=2, dtype=jnp.float32)
    _, bptt_grads, _ = run_estimator(cell_name, "float32", "bptt", prob)
    _, rtrl_grads, _ = run_estimator(cell_name, "float32", "rtrl", prob)
    assert_tree_close(rtrl_grads, bptt_grads, rtol=1e-5)


def test_two_batch_axes(x64):
    """Oracle: the hand loop with the same two batch axes (no batch axis: the UORO test)."""
    batch_shape = (2, 2)
    cell = make_cell("rnn", "float64")
    prob = problem(cell, batch_shape, 4, seed=3, dtype=jnp.float64)
    est = estimator("rnn", "float64", "rtrl")
    state = est.init(prob.params, batch_shape, carry=prob.carry)
    loss, grads, _ = jitted_update("rnn", "float64", "rtrl")(prob.params, state, prob.chunk)
    expected_loss, expected = jax.value_and_grad(
        lambda p: hand_loss(cell, p, prob.carry, prob.chunk)
    )(prob.params)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    assert_tree_close(grads, expected, rtol=1e-10)


def test_tbptt_with_k_equal_to_T_is_bptt(x64):
    """Oracle: the BPTT estimator (itself checked against the hand loop above)."""
    prob = problem(make_cell("lstm", "float64"), (BATCH,), 6, seed=1, dtype=jnp.float64)
    _, bptt_grads, bptt_state = run_estimator("lstm", "float64", "bptt", prob)
    _, grads, state = run_estimator("lstm", "float64", "tbptt:6", prob)
    assert_tree_close(grads, bptt_grads, rtol=1e-12)
    assert_tree_close(state.carry, bptt_state.carry, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Truncated BPTT and streams
# --------------------------------------------------------------------------------------


def stream_through(cell_name, spec, prob: Problem, chunk_steps: int):
    """Feeds ``prob.chunk`` to the estimator in chunks of ``chunk_steps`` inside one
    ``lax.scan`` (state carried); returns the summed losses and gradients."""
    est = estimator(cell_name, "float64", spec)
    inputs, data, resets = prob.chunk
    count = inputs.shape[-2] // chunk_steps

    def split(a):  # [B, count * T, ...] -> [count, B, T, ...]
        a = a.reshape(a.shape[0], count, chunk_steps, *a.shape[2:])
        return jnp.moveaxis(a, 1, 0)

    chunks = Chunk(split(inputs), jax.tree.map(split, data), split(resets))

    @fast_jit
    def run(params, carry, chunks):
        state = est.init(params, (BATCH,), carry=carry)

        def body(state, chunk):
            loss, grads, state = est.update(params, state, chunk)
            return state, (loss, grads)

        _, (losses, grads) = jax.lax.scan(body, state, chunks)
        return jnp.sum(losses), jax.tree.map(lambda g: jnp.sum(g, 0), grads)

    return run(prob.params, prob.carry, chunks)


@settings(max_examples=1, deadline=None)  # each example compiles anew
@given(
    k1=st.integers(1, 3),
    extra=st.integers(0, 4),
    multiple=st.integers(1, 2),
    chunks=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
@example(k1=2, extra=0, multiple=1, chunks=3, seed=0)  # chunked TBPTT, chunk = k
@example(k1=1, extra=3, multiple=2, chunks=2, seed=1)  # real-time TBPTT(1, 4)
def test_tbptt_on_a_stream_equals_the_windows_of_the_hand_loop(k1, extra, multiple, chunks, seed):
    """Oracle: the hand loop one TBPTT window at a time (each from a carry cut with
    stop_gradient), over the whole stream; the estimator sees it in chunks of
    ``multiple * k1`` steps with the state carried, windows reaching into earlier
    chunks when ``k2 > k1``, and resets at random document boundaries."""
    k2, chunk_steps = k1 + extra, multiple * k1
    steps = chunk_steps * chunks
    with jax.enable_x64(True):
        prob = problem(make_cell("rnn", "float64"), (BATCH,), steps, seed, jnp.float64)
        windows = tuple(truncation_windows(steps, k1, k2))
        loss, expected = hand_gradient("rnn", "float64", windows)(
            prob.params, prob.carry, prob.chunk
        )
        spec = f"tbptt:{k1}:{k2}"
        got_loss, grads = stream_through("rnn", spec, prob, chunk_steps)
        np.testing.assert_allclose(got_loss, loss, rtol=1e-12)
        assert_tree_close(grads, expected, rtol=1e-10)


@pytest.mark.parametrize("cell_name", ["lstm"])
def test_stateful_chunks_equal_one_sequence_cut_at_the_chunk_boundaries(cell_name, x64):
    """Oracle: one long sequence through the hand loop with ``stop_gradient`` on the carry
    at every chunk boundary (and resets at document boundaries); the estimator sees the
    chunks one by one, carrying the state: BPTT per chunk, and tbptt with k = chunk."""
    steps, chunk_steps = 12, 4
    prob = problem(make_cell(cell_name, "float64"), (BATCH,), steps, seed=5, dtype=jnp.float64)
    cut = tuple((start, start, start + chunk_steps) for start in range(0, steps, chunk_steps))
    loss, expected = hand_gradient(cell_name, "float64", cut)(prob.params, prob.carry, prob.chunk)
    for spec in ("bptt", f"tbptt:{chunk_steps}"):
        got_loss, grads = stream_through(cell_name, spec, prob, chunk_steps)
        np.testing.assert_allclose(got_loss, loss, rtol=1e-12)
        assert_tree_close(grads, expected, rtol=1e-10)


def test_chunked_tbptt_equals_stop_gradient_at_multiples_of_k(x64):
    """Oracle: a single hand loop in which the carry passes through ``stop_gradient``
    before every step that is a multiple of k (no windows): TBPTT(k, k)."""
    cell = make_cell("rnn", "float64")
    prob = problem(cell, (BATCH,), 9, seed=6, dtype=jnp.float64)
    k = 3

    def loss(params):
        inputs, data, resets = prob.chunk
        initial = cell.initial_carry((BATCH,))
        c, total = prob.carry, 0.0
        for t in range(9):
            if t % k == 0:
                c = jax.lax.stop_gradient(c)
            c, y = cell.step(params["cell"], where(resets[:, t], initial, c), inputs[:, t])
            data_t = {"weight": data["weight"][:, t], "target": data["target"][:, t]}
            total = total + jnp.sum(jax.vmap(step_loss, (None, 0, 0))(params, y, data_t))
        return total / BATCH

    _, grads, _ = run_estimator("rnn", "float64", f"tbptt:{k}", prob)
    assert_tree_close(grads, jax.grad(loss)(prob.params), rtol=1e-10)


# --------------------------------------------------------------------------------------
# UORO
# --------------------------------------------------------------------------------------


def test_uoro_is_unbiased(x64):
    """Oracle: the exact (BPTT) gradient.  The mean of N = 20,000 independent UORO
    estimates (vmapped over keys) must lie within z standard errors of it in every
    component, with the standard error from the sample variance and z the Bonferroni
    bound for a family-wise false-alarm rate of 1e-3 over the components.  The same
    statistic must reject the truncated gradient tbptt:1 (a biased estimate), so the
    test has the power to see a bias of that size."""
    cell_name, samples = "rnn", 20_000
    prob = problem(make_cell(cell_name, "float64"), (), 5, seed=7, dtype=jnp.float64)
    prob = prob._replace(chunk=prob.chunk._replace(resets=jnp.zeros((5,), bool)))
    est = estimator(cell_name, "float64", "uoro")

    @fast_jit
    def draws(keys):
        def one(key):
            state = est.init(prob.params, (), carry=prob.carry, key=key)
            return est.update(prob.params, state, prob.chunk)[1]["cell"]

        return jax.vmap(one)(keys)

    flat = jax.vmap(lambda g: jax.flatten_util.ravel_pytree(g)[0])
    estimates = np.asarray(flat(draws(jax.random.split(jax.random.key(0), samples))))
    exact = jax.flatten_util.ravel_pytree(
        run_estimator(cell_name, "float64", "bptt", prob)[1]["cell"]
    )[0]
    biased = jax.flatten_util.ravel_pytree(
        run_estimator(cell_name, "float64", "tbptt:1", prob)[1]["cell"]
    )[0]
    mean = estimates.mean(0)
    standard_error = estimates.std(0, ddof=1) / math.sqrt(samples)
    components = mean.size
    z = statistics.NormalDist().inv_cdf(1 - 1e-3 / (2 * components))
    exact_z = np.abs(mean - np.asarray(exact)) / standard_error
    assert exact_z.max() < z, (exact_z.max(), z)
    assert (np.abs(mean - np.asarray(biased)) / standard_error).max() > z


# --------------------------------------------------------------------------------------
# SnAp-1
# --------------------------------------------------------------------------------------


def dense_masked_rtrl(cell, params, carry, chunk):
    """SnAp-1 by dense matrices: ``J <- (D J + I) * M`` with ``M[(l, u), p] = [u ==
    unit(p)]``; the gradient at step t is ``dl/dtheta + dl/dy (dy/ds J_{t-1})``.  One
    example; Jacobians from ``jax.jacobian``, the recursion in NumPy (float64)."""
    cell_params = params["cell"]
    flat_params, unravel_params = jax.flatten_util.ravel_pytree(cell_params)
    flat_carry, unravel_carry = jax.flatten_util.ravel_pytree(carry)
    units = np.asarray(
        jax.flatten_util.ravel_pytree(gradients.dense_units(cell_params, HIDDEN))[0]
    ).astype(int)
    mask = (np.arange(flat_carry.size)[:, None] % HIDDEN) == units[None, :]

    def flat_step(theta, s, x):
        new, y = cell.step(unravel_params(theta), unravel_carry(s), x)
        return jax.flatten_util.ravel_pytree(new)[0], y

    jacobians = fast_jit(jax.jacobian(flat_step, argnums=(0, 1)))
    inputs, data, resets = chunk
    s, sensitivity = np.asarray(flat_carry), np.zeros((flat_carry.size, flat_params.size))
    grad = np.zeros(flat_params.size)
    initial = np.asarray(jax.flatten_util.ravel_pytree(cell.initial_carry(()))[0])
    for t in range(inputs.shape[0]):
        if resets[t]:
            s, sensitivity = initial, np.zeros_like(sensitivity)
        (d_s_theta, d_s_s), (d_y_theta, d_y_s) = jacobians(flat_params, s, inputs[t])
        new_s, y = flat_step(flat_params, s, inputs[t])
        data_t = jax.tree.map(lambda a, t=t: a[t], data)
        dl_dy = np.asarray(jax.grad(step_loss, argnums=1)(params, y, data_t))
        grad += dl_dy @ (np.asarray(d_y_theta) + np.asarray(d_y_s) @ sensitivity)
        sensitivity = (np.asarray(d_s_s) @ sensitivity + np.asarray(d_s_theta)) * mask
        s = np.asarray(new_s)
    return unravel_params(jnp.asarray(grad))


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_snap1_equals_dense_masked_rtrl(cell_name, x64):
    """Oracle: :func:`dense_masked_rtrl` (NumPy matrices, per example, averaged)."""
    cell = make_cell(cell_name, "float64")
    prob = problem(cell, (BATCH,), 5, seed=8, dtype=jnp.float64)
    _, grads, _ = run_estimator(cell_name, "float64", "snap1", prob)
    expected = []
    for b in range(BATCH):
        example_chunk = jax.tree.map(lambda a, b=b: np.asarray(a[b]), prob.chunk)
        example_carry = jax.tree.map(lambda a, b=b: a[b], prob.carry)
        expected.append(dense_masked_rtrl(cell, prob.params, example_carry, example_chunk))
    mean = jax.tree.map(lambda *g: sum(g) / BATCH, *expected)
    assert_tree_close(grads["cell"], mean, rtol=1e-10)


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_one_step_influence_stays_within_the_units(cell_name, x64):
    """Oracle: the full immediate Jacobian ``d s_t / d theta`` (``jax.jacobian``) has no
    entry outside the unit pattern that snap1 keeps (the pattern is a superset)."""
    cell = make_cell(cell_name, "float64")
    prob = problem(cell, (), 1, seed=9, dtype=jnp.float64)
    cell_params = prob.params["cell"]
    flat_params, unravel = jax.flatten_util.ravel_pytree(cell_params)
    jacobian = jax.jacobian(
        lambda theta: jax.flatten_util.ravel_pytree(
            cell.step(unravel(theta), prob.carry, prob.chunk.inputs[0])[0]
        )[0]
    )(flat_params)
    units = jax.flatten_util.ravel_pytree(gradients.dense_units(cell_params, HIDDEN))[0]
    outside = (np.arange(jacobian.shape[0])[:, None] % HIDDEN) != np.asarray(units)[None, :]
    assert np.all(np.asarray(jacobian)[outside] == 0)
    assert np.count_nonzero(np.asarray(jacobian)[~outside]) > 0


# --------------------------------------------------------------------------------------
# Diagonal RTRL on element-wise linear recurrences
# --------------------------------------------------------------------------------------


def gated_recurrence() -> Cell:
    """``a = sigmoid(x W_a + c_a)``, ``b = (1 - a) tanh(x W_b)``, ``y = h + x W_skip``:
    a minGRU-like real diagonal recurrence (``W_skip`` enters the output only)."""

    def coefficients(params, x):
        a = jax.nn.sigmoid(x @ params["gate"] + params["gate_bias"])
        return a, (1 - a) * jnp.tanh(x @ params["input"])

    def output(params, h, x):
        return h + x @ params["skip"]

    def units(params):
        return jax.tree.map(lambda p: np.broadcast_to(np.arange(HIDDEN), p.shape), params)

    return _linear_cell("gated_diagonal", coefficients, output, units, _gated_init,
                        jnp.float64, "gate", 0)  # fmt: skip


def _gated_init(key, features):
    keys = jax.random.split(key, 4)
    shapes = {"gate": (features, HIDDEN), "gate_bias": (HIDDEN,), "input": (features, HIDDEN),
              "skip": (features, HIDDEN)}  # fmt: skip
    return {
        name: jax.random.normal(k, shape, jnp.float64)
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def lru_recurrence() -> Cell:
    """An LRU-like complex recurrence (Orvieto et al. 2023): ``a = lambda = exp(-exp(nu) +
    i exp(theta))``, ``b = gamma (B x)`` with ``gamma = sqrt(1 - |lambda|^2)`` and complex
    ``B [H, F]`` (units on its first axis), ``y = Re(h C^T)`` with ``C`` output only."""

    def coefficients(params, x):
        magnitude = jnp.exp(-jnp.exp(params["nu"]))
        angle = jnp.exp(params["theta"])
        lam = jax.lax.complex(magnitude * jnp.cos(angle), magnitude * jnp.sin(angle))
        gamma = jnp.sqrt(1 - jnp.square(magnitude))
        b_matrix = jax.lax.complex(params["b_real"], params["b_imag"])
        projected = x.astype(b_matrix.dtype) @ b_matrix.T
        return lam, jax.lax.complex(gamma, jnp.zeros_like(gamma)) * projected

    def output(params, h, x):
        del x
        return jnp.real(h @ jax.lax.complex(params["c_real"], params["c_imag"]).T)

    def units(params):
        rows = np.arange(HIDDEN)
        return {
            "nu": rows, "theta": rows,
            "b_real": np.broadcast_to(rows[:, None], params["b_real"].shape),
            "b_imag": np.broadcast_to(rows[:, None], params["b_imag"].shape),
            "c_real": np.zeros(params["c_real"].shape, int),
            "c_imag": np.zeros(params["c_imag"].shape, int),
        }  # fmt: skip

    def init(key, features):
        keys = jax.random.split(key, 6)
        return {
            "nu": jnp.log(-jnp.log(jax.random.uniform(keys[0], (HIDDEN,), jnp.float64, 0.6, 0.95))),
            "theta": jnp.log(jax.random.uniform(keys[1], (HIDDEN,), jnp.float64, 0.1, 3.0)),
            "b_real": jax.random.normal(keys[2], (HIDDEN, features), jnp.float64),
            "b_imag": jax.random.normal(keys[3], (HIDDEN, features), jnp.float64),
            "c_real": jax.random.normal(keys[4], (HIDDEN, HIDDEN), jnp.float64),
            "c_imag": jax.random.normal(keys[5], (HIDDEN, HIDDEN), jnp.float64),
        }

    return _linear_cell("lru_like", coefficients, output, units, init, jnp.complex128,
                        "b_real", 1)  # fmt: skip


def _linear_cell(name, coefficients, output, units, init, carry_dtype, weight, axis) -> Cell:
    """A :class:`Cell` stepping ``h = a h + b`` and declaring it (with ``units``) as its
    :class:`LinearRecurrence`; ``params[weight].shape[axis]`` is ``F``."""

    def step(params, h, x):
        a, b = coefficients(params, x)
        h = a * h + b
        return h, output(params, h, x)

    return Cell(
        name=name,
        hidden_size=HIDDEN,
        init=init,
        initial_carry=lambda batch_shape=(): jnp.zeros((*batch_shape, HIDDEN), carry_dtype),
        step=step,
        output=output,
        input_size=lambda params: params[weight].shape[axis],
        linear=LinearRecurrence(coefficients, units=units),
    )


def numpy_gated_rtrl(params, chunk):
    """Zucchet et al.'s exact sensitivities for :func:`gated_recurrence`, by hand, NumPy.

    ``h = a h' + (1 - a) g`` with ``a = sigmoid(z_a)``, ``g = tanh(z_b)``::

        de/dW_a[f, u] <- a_u e[f, u] + (h'_u - g_u) a_u (1 - a_u) x_f    (c_a: x_f -> 1)
        de/dW_b[f, u] <- a_u e[f, u] + (1 - a_u) (1 - g_u^2) x_f

    and ``dl/dtheta = dl/dy_t dh_t/dtheta`` (``y = h + x W_skip``).  Returns the loss and
    the gradient of the mean over examples of the summed step losses.
    """
    p = {k: np.asarray(v) for k, v in params["cell"].items()}
    readout = {k: np.asarray(v) for k, v in params["readout"].items()}
    inputs, data, resets = (np.asarray(a) for a in (chunk.inputs, 0, chunk.resets))
    data = {k: np.asarray(v) for k, v in chunk.data.items()}
    batch, steps, features = inputs.shape
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    grads_readout = {k: np.zeros_like(v) for k, v in readout.items()}
    total = 0.0
    for n in range(batch):
        h = np.zeros(HIDDEN)
        e_gate, e_bias, e_input = (
            np.zeros((features, HIDDEN)),
            np.zeros(HIDDEN),
            np.zeros((features, HIDDEN)),
        )
        for t in range(steps):
            x = inputs[n, t]
            if resets[n, t]:
                h = np.zeros(HIDDEN)
                e_gate, e_bias, e_input = 0 * e_gate, 0 * e_bias, 0 * e_input
            a = 1 / (1 + np.exp(-(x @ p["gate"] + p["gate_bias"])))
            g = np.tanh(x @ p["input"])
            da = a * (1 - a) * (h - g)
            e_gate = a * e_gate + np.outer(x, da)
            e_bias = a * e_bias + da
            e_input = a * e_input + np.outer(x, (1 - a) * (1 - g**2))
            h = a * h + (1 - a) * g
            y = h + x @ p["skip"]
            error = y @ readout["weight"] + readout["bias"] - data["target"][n, t]
            w = data["weight"][n, t]
            total += w * 0.5 * np.sum(error**2)
            dy = w * readout["weight"] @ error
            grads["gate"] += e_gate * dy
            grads["gate_bias"] += e_bias * dy
            grads["input"] += e_input * dy
            grads["skip"] += np.outer(x, dy)
            grads_readout["weight"] += w * np.outer(y, error)
            grads_readout["bias"] += w * error
    scale = lambda tree: {k: v / batch for k, v in tree.items()}  # noqa: E731
    return total / batch, {"cell": scale(grads), "readout": scale(grads_readout)}


def linear_problem(cell, seed, steps=6):
    rng = np.random.default_rng(seed)
    cell_params = cell.init(jax.random.key(seed), FEATURES)
    readout = {
        "weight": normal(rng, (HIDDEN, 2), jnp.float64),
        "bias": normal(rng, (2,), jnp.float64),
    }
    data = {"weight": jnp.asarray(rng.uniform(size=(BATCH, steps))),
            "target": normal(rng, (BATCH, steps, 2), jnp.float64)}  # fmt: skip
    resets = jnp.asarray(rng.uniform(size=(BATCH, steps)) < 0.2)
    chunk = Chunk(normal(rng, (BATCH, steps, FEATURES), jnp.float64), data, resets)
    return {"cell": cell_params, "readout": readout}, chunk


def test_diagonal_rtrl_equals_numpy_sensitivities_and_bptt(x64):
    """Oracles: :func:`numpy_gated_rtrl` (hand-derived recursion) and the BPTT estimator;
    SnAp-1 with the same units is exact on a diagonal recurrence too."""
    cell = gated_recurrence()
    params, chunk = linear_problem(cell, seed=10)
    expected_loss, expected = numpy_gated_rtrl(params, chunk)
    results = {}
    for name, est in {
        "diagonal_rtrl": gradients.diagonal_rtrl(cell, step_loss),
        "bptt": gradients.bptt(cell, step_loss),
        "snap1": gradients.snap1(cell, step_loss, units=cell.linear.units),
    }.items():
        state = est.init(params, (BATCH,))
        results[name] = fast_jit(est.update)(params, state, chunk)
    for name, (loss, grads, _) in results.items():
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-12, err_msg=name)
        assert_tree_close(grads, expected, rtol=1e-10)


def test_parallel_path_takes_a_time_invariant_coefficient(x64):
    """Oracle: the sequential scan.  The LRU-like cell's ``a`` is ``[N]`` (no batch or time
    axes), which the parallel path broadcasts; this failed on GPU, where ``path="auto"``
    picks the parallel path, before it was found on the H200."""
    cell = lru_recurrence()
    params, chunk = linear_problem(cell, seed=5)
    outputs = {
        path: rnnlab.unroll(cell, params["cell"], chunk.inputs, resets=chunk.resets, path=path)
        for path in ("sequential", "parallel")
    }
    chex.assert_trees_all_close(outputs["parallel"], outputs["sequential"], rtol=1e-10)


def test_diagonal_rtrl_is_exact_on_a_complex_lru_like_recurrence(x64):
    """Oracle: the BPTT estimator (JAX autodiff through the complex recurrence)."""
    cell = lru_recurrence()
    params, chunk = linear_problem(cell, seed=11)
    est = gradients.diagonal_rtrl(cell, step_loss)
    reference = gradients.bptt(cell, step_loss)
    _, grads, state = fast_jit(est.update)(params, est.init(params, (BATCH,)), chunk)
    _, expected, expected_state = fast_jit(reference.update)(
        params, reference.init(params, (BATCH,)), chunk
    )
    assert_tree_close(grads, expected, rtol=1e-10)
    np.testing.assert_allclose(state.carry, expected_state.carry, rtol=1e-12)


@pytest.mark.parametrize("cell_name", ["lru", "rglru"])
def test_diagonal_rtrl_equals_bptt_on_the_registered_cells(cell_name, x64):
    """Oracle: the BPTT estimator.  The LRU's parameters each drive one unit; the RG-LRU's
    input projection drives every unit's gates (units ``-1``, full sensitivity columns)."""
    cell = rnnlab.cells.make(cell_name, HIDDEN, param_dtype=jnp.float64)
    params, chunk = linear_problem(cell, seed=12)
    results = []
    for est in (gradients.diagonal_rtrl(cell, step_loss), gradients.bptt(cell, step_loss)):
        results.append(fast_jit(est.update)(params, est.init(params, (BATCH,)), chunk))
    (loss, grads, state), (expected_loss, expected, expected_state) = results
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    assert_tree_close(grads, expected, rtol=1e-10)
    np.testing.assert_allclose(state.carry, expected_state.carry, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Pascanu et al.'s Omega
# --------------------------------------------------------------------------------------


def linear_rnn(weight_hh: np.ndarray, batch=2, steps=5, seed=12):
    """A linear rnnlab RNN with the given ``W_hh`` and random inputs, float64."""
    hidden = weight_hh.shape[0]
    cell = rnnlab.rnn(hidden, activation="linear", param_dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    params = {
        "weight_ih": rng.standard_normal((FEATURES, hidden)),
        "weight_hh": weight_hh,
        "bias_ih": rng.standard_normal(hidden),
        "bias_hh": rng.standard_normal(hidden),
    }
    xs = rng.standard_normal((batch, steps, FEATURES))
    return cell, params, xs


def numpy_omega(params, xs, q, gradient_constant_error=False):
    """Omega for ``h_k = x_k W_ih + b + h_{k-1} W_hh`` and ``C = sum_{b,k} q_k . h_k +
    1/2 sum_b |h_T|^2`` by hand: ``g_T = q_T + h_T``, ``g_k = q_k + g_{k+1} W^T``; the
    terms are ``(|g_k W^T|^2 / |g_k|^2 - 1)^2`` for ``|g_k|^2 >= 1e-20``, averaged.

    With ``gradient_constant_error`` it also returns ``dOmega/dW_hh`` holding ``g``
    constant, Pascanu's code: ``sum 2 (r - 1) 2 (v g^T)... / |g|^2 / count`` with
    ``v = W g`` (``d|W g|^2 / dW = 2 v g^T``).
    """
    w = params["weight_hh"]
    batch, steps, _ = xs.shape
    terms, gradient = [], np.zeros_like(w)
    for b in range(batch):
        h = np.zeros(w.shape[0])
        states = []
        for k in range(steps):
            h = xs[b, k] @ params["weight_ih"] + params["bias_ih"] + h @ w + params["bias_hh"]
            states.append(h)
        errors = [None] * steps
        errors[-1] = q[-1] + states[-1]
        for k in range(steps - 2, -1, -1):
            errors[k] = q[k] + errors[k + 1] @ w.T
        for g in errors:
            v = g @ w.T
            if g @ g >= 1e-20:
                ratio = (v @ v) / (g @ g)
                terms.append((ratio - 1) ** 2)
                gradient += 2 * (ratio - 1) * 2 * np.outer(v, g) / (g @ g)
    omega = float(np.mean(terms))
    return (omega, gradient / len(terms)) if gradient_constant_error else omega


def linear_cost(q):
    def cost(ys):
        return jnp.sum(ys * q) + 0.5 * jnp.sum(jnp.square(ys[..., -1, :]))

    return cost


def test_omega_equals_the_hand_value_on_a_linear_rnn(x64):
    """Oracle: :func:`numpy_omega` on a random linear RNN."""
    rng = np.random.default_rng(13)
    weight = rng.standard_normal((3, 3)) * 0.6
    cell, params, xs = linear_rnn(weight)
    q = rng.standard_normal((5, 3))
    omega = gradients.pascanu_regularizer(cell, params, xs, linear_cost(q))
    np.testing.assert_allclose(omega, numpy_omega(params, xs, q), rtol=1e-12)


def test_omega_skips_vanishing_terms_as_the_original_code_does(x64):
    """Oracle: :func:`numpy_omega` with a nilpotent ``W_hh`` and a loss on ``h_T`` only:
    ``dC/dh_k = h_T (W^T)^(T-k)`` is exactly 0 for ``T - k >= 2``, so those terms are
    skipped and only the last two enter the mean (3 terms would give a different value)."""
    weight = np.array([[0.0, 1.5], [0.0, 0.0]])
    cell, params, xs = linear_rnn(weight, batch=1)
    q = np.zeros((5, 2))
    omega = gradients.pascanu_regularizer(cell, params, xs, linear_cost(q))
    expected = numpy_omega(params, xs, q)
    np.testing.assert_allclose(omega, expected, rtol=1e-12)
    # The last term is (|h_T W^T|^2/|h_T|^2 - 1)^2, the one before (0 - 1)^2 = 1.
    h_last = np.asarray(rnnlab.unroll(cell, params, xs)[0])[0, -1]
    last = ((h_last @ weight.T) @ (h_last @ weight.T) / (h_last @ h_last) - 1) ** 2
    np.testing.assert_allclose(omega, (last + 1.0) / 2, rtol=1e-12)


def test_omega_constant_error_gradient_is_pascanus(x64):
    """Oracle: the hand gradient of :func:`numpy_omega` with ``g`` held constant, the
    gradient the authors' code takes (``W_hh`` only; other params get none for a linear
    RNN, whose Jacobian is ``W_hh`` alone)."""
    rng = np.random.default_rng(14)
    cell, params, xs = linear_rnn(rng.standard_normal((3, 3)) * 0.6)
    q = rng.standard_normal((5, 3))
    _, expected = numpy_omega(params, xs, q, gradient_constant_error=True)
    grads = jax.grad(
        lambda p: gradients.pascanu_regularizer(cell, p, xs, linear_cost(q), constant_error=True)
    )(params)
    np.testing.assert_allclose(grads["weight_hh"], expected, rtol=1e-10)
    for name in ("weight_ih", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(grads[name], 0.0)


@pytest.mark.parametrize("cell_name", ["lstm"])
def test_omega_gradient_matches_central_differences(cell_name, x64):
    """Oracle: central finite differences of Omega in float64 (step 1e-6), every param."""
    cell = make_cell(cell_name, "float64")
    rng = np.random.default_rng(15)
    params = jax.tree.map(
        lambda p: jnp.asarray(rng.standard_normal(p.shape) * 0.5),
        cell.init(jax.random.key(0), FEATURES),
    )
    xs = rng.standard_normal((2, 4, FEATURES))
    q = rng.standard_normal((4, HIDDEN))

    def cost(ys):
        return jnp.sum(ys * q) + jnp.sum(jnp.sin(ys[..., -1, :]) ** 2)

    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def omega(theta):
        return gradients.pascanu_regularizer(cell, unravel(theta), xs, cost)

    step = 1e-6
    basis = np.eye(flat.size) * step

    @fast_jit
    def gradient_and_differences(theta):
        differences = jax.vmap(omega)(theta + basis) - jax.vmap(omega)(theta - basis)
        return jax.grad(omega)(theta), differences / (2 * step)

    gradient, differences = gradient_and_differences(flat)
    np.testing.assert_allclose(gradient, differences, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------


def test_gradient_similarity_hand_values():
    """Oracle: cosine, relative error and norm ratio computed by hand."""
    reference = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([0.0, 2.0])}
    estimate = {"a": jnp.array([1.0, 1.0]), "b": jnp.array([0.0, 2.0])}
    result = gradients.gradient_similarity(reference, estimate)
    np.testing.assert_allclose(result["a"]["cosine"], 1 / math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(result["a"]["relative_error"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(result["a"]["norm_ratio"], math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(result["b"]["cosine"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        result["all"]["cosine"], 5 / (math.sqrt(5) * math.sqrt(6)), rtol=1e-6
    )
    np.testing.assert_allclose(result["all"]["relative_error"], 1 / math.sqrt(5), rtol=1e-6)


def test_compare_gradients_rows(x64):
    """Oracles: each row equals :func:`gradient_similarity` of the hand loop's exact and
    windowed gradients on that chunk alone (the padding that batches chunks of several
    lengths changes nothing), and tbptt:K on a chunk with T <= K truncates nothing.
    A deterministic estimator gives one row per chunk whatever ``samples`` is (UORO's
    draws: the gradient_quality smoke test)."""
    cell = make_cell("rnn", "float64")
    short = problem(cell, (BATCH,), 4, seed=16, dtype=jnp.float64)
    long = problem(cell, (BATCH,), 8, seed=17, dtype=jnp.float64)
    params = long.params
    initial = cell.initial_carry((BATCH,))
    chunks = [p.chunk for p in (short, long)]
    rows = gradients.compare_gradients(
        cell, step_loss, params, chunks, ["tbptt:4"], samples=3, key=jax.random.key(1)
    )
    overall = {r["T"]: r for r in rows if r["group"] == "all"}
    assert len([r for r in rows if r["group"] == "all"]) == 2
    for prob in (short, long):
        steps = prob.chunk.inputs.shape[-2]
        windows = tuple(truncation_windows(steps, 4, 4))
        _, exact = hand_gradient("rnn", "float64")(params, initial, prob.chunk)
        _, truncated = hand_gradient("rnn", "float64", windows)(params, initial, prob.chunk)
        expected = gradients.gradient_similarity(exact, truncated)
        for group in ("all", "cell/weight_hh", "readout/bias"):
            row = next(r for r in rows if (r["T"], r["group"]) == (steps, group))
            assert row["estimator"] == "tbptt:4" and row["truncation"] == 4
            for measure in ("cosine", "relative_error", "norm_ratio"):
                np.testing.assert_allclose(
                    row[measure], expected[group][measure], rtol=1e-9, atol=1e-12
                )
    assert overall[4]["cosine"] > 1 - 1e-12
    assert overall[8]["relative_error"] > 1e-3


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bpt", "did you mean 'bptt'"),
        ("tbptt", "needs its truncation"),
        ("tbptt:0", "k1 must be an int >= 1"),
        ("tbptt:4:0", "k2 must be an int >= 1"),
        ("tbptt:-3", "k1 must be an int >= 1"),
        ("tbptt:ten", "k1 must be an integer"),
        ("tbptt:8:4", "k2 >= k1"),
        ("tbptt:1:2:3", "needs its truncation"),
        ("rtrl:5", "takes no options"),
        (50, "must be a string"),
    ],
)
def test_bad_estimator_names(text, message):
    with pytest.raises(ValueError, match=message):
        gradients.parse_estimator(text)


def test_truncation_longer_than_the_chunk():
    with pytest.raises(ValueError, match="k1=50 exceeds the chunk length T=20"):
        gradients.parse_estimator("tbptt:50", length=20)
    with pytest.raises(ValueError, match="multiple of the tbptt truncation k1=3"):
        gradients.parse_estimator("tbptt:3", length=10)
    assert str(gradients.parse_estimator("tbptt:5:9", length=10)) == "tbptt:5:9"
    prob = problem(make_cell("rnn"), (BATCH,), 4, seed=17, dtype=jnp.float32)
    with pytest.raises(ValueError, match="k1=6 exceeds the chunk length T=4"):
        run_estimator("rnn", "float32", "tbptt:6", prob)


def test_rtrl_refuses_a_model_too_large_and_suggests_alternatives():
    cell = rnnlab.lstm(128)
    params = {"cell": jax.eval_shape(lambda key: cell.init(key, 2), jax.random.key(0))}
    with pytest.raises(ValueError, match=r"256 x 67,584.*Use 'snap1' or 'uoro'"):
        gradients.rtrl(cell, step_loss).init(params, (4,))
    small = gradients.rtrl(make_cell("rnn"), step_loss, max_sensitivity_size=10)
    prob = problem(make_cell("rnn"), (BATCH,), 4, seed=18, dtype=jnp.float32)
    with pytest.raises(ValueError, match="max_sensitivity_size=10"):
        small.init(prob.params, (BATCH,))


def test_other_bad_inputs():
    cell = make_cell("rnn")
    prob = problem(cell, (BATCH,), 4, seed=19, dtype=jnp.float32)
    with pytest.raises(ValueError, match="uoro is stochastic: pass a PRNG key"):
        gradients.uoro(cell, step_loss).init(prob.params, (BATCH,))
    with pytest.raises(ValueError, match="params must be a dict with the cell's params"):
        gradients.bptt(cell, step_loss).init(prob.params["cell"], (BATCH,))
    est = gradients.bptt(cell, step_loss)
    state = est.init(prob.params, (BATCH,))
    with pytest.raises(ValueError, match="chunk.inputs has shape"):
        est.update(prob.params, state, prob.chunk._replace(inputs=prob.chunk.inputs[0]))
    with pytest.raises(ValueError, match="chunk.resets must be bool"):
        est.update(prob.params, state, prob.chunk._replace(resets=jnp.zeros((BATCH, 4))))
    with pytest.raises(ValueError, match=r"chunk.data\['weight'\] has shape"):
        bad = {**prob.chunk.data, "weight": prob.chunk.data["weight"][:, :2]}
        est.update(prob.params, state, prob.chunk._replace(data=bad))
    with pytest.raises(ValueError, match="the lstm cell declares no LinearRecurrence"):
        gradients.diagonal_rtrl(make_cell("lstm"), step_loss)
    gated, _ = gradients_free_cell()
    with pytest.raises(ValueError, match=r"cannot tell which unit parameter \['scale'\]"):
        gradients.snap1(gated, step_loss).init({"cell": gated.init(None, FEATURES)}, (BATCH,))
    paired = Cell(
        name="paired", hidden_size=HIDDEN, init=gated.init,
        initial_carry=lambda batch_shape=(): (gated.initial_carry(batch_shape),) * 2,
        step=lambda params, c, x: ((gated.step(params, c[0], x)[0],) * 2, c[0]),
    )  # fmt: skip
    with pytest.raises(ValueError, match="pytree carry and no output function"):
        gradients.pascanu_regularizer(paired, paired.init(None, FEATURES), np.zeros((3, 2)),
                                      jnp.sum)  # fmt: skip


def gradients_free_cell():
    """A cell with a scalar parameter and no declared recurrence."""

    def step(params, h, x):
        h = jnp.tanh(params["scale"] * h + x @ params["weight"])
        return h, h

    cell = Cell(
        name="scaled",
        hidden_size=HIDDEN,
        init=lambda key, f: {"scale": jnp.ones(()), "weight": jnp.ones((f, HIDDEN))},
        initial_carry=lambda batch_shape=(): jnp.zeros((*batch_shape, HIDDEN)),
        step=step,
        input_size=lambda params: params["weight"].shape[0],
    )
    return cell, None
