"""rnnlab against torch.nn.{RNN, LSTM, GRU} with the same weights (rnnlab.interop).

The oracle is torch's own implementation: outputs, final carries and gradients
of the converted model must match torch's in float32.  Max errors are printed at
the end of the module (run with ``-s``).
"""

import collections
import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab.interop import from_torch, from_torch_carry, to_torch, to_torch_carry

ATOL = 2e-5
MAX_ERRORS = collections.defaultdict(float)
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


@pytest.fixture(scope="module", autouse=True)
def _print_max_errors():
    yield
    for name, error in sorted(MAX_ERRORS.items()):
        print(f"torch parity, max abs error, {name}: {error:.3g}")


def _assert_close(name, ours, theirs, atol=ATOL):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
    error = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    MAX_ERRORS[name] = max(MAX_ERRORS[name], error)
    assert error <= atol, f"{name}: max abs error {error}"


def _torch_module(kind, input_size, hidden_size, **options):
    torch.manual_seed(options.pop("seed", 0))
    if kind.startswith("rnn"):
        return torch.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **options)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](input_size, hidden_size, **options)


@functools.partial(jax.jit, static_argnums=0)
def _run(model, params, xs, carry=None, lengths=None):
    """The pure path: ``unroll`` for a cell, ``Layer.apply`` for a layer."""
    if isinstance(model, rnnlab.Cell):
        return rnnlab.unroll(model, params, xs, carry=carry, lengths=lengths)
    return model.apply(params, xs, carry=carry, lengths=lengths, deterministic=True)


def _assert_final_carry_close(name, kind, final, torch_final):
    """Compares our final carry with torch's ``h_n`` (and ``c_n``), ``[L*D, B, H]``."""
    ours = to_torch_carry(final)
    ours, theirs = (ours, torch_final) if kind == "lstm" else ((ours,), (torch_final,))
    for label, a, b in zip(("h_n", "c_n"), ours, theirs, strict=False):
        _assert_close(f"{name} {label}", a, b.detach().numpy())


@settings(max_examples=3)
@example(kind="rnn_tanh", layers=1, bidir=False, bias=True, batch_first=True, sizes=(3, 5, 2, 7))
@example(kind="rnn_relu", layers=1, bidir=False, bias=True, batch_first=True, sizes=(3, 5, 2, 7))
@example(kind="lstm", layers=1, bidir=False, bias=True, batch_first=True, sizes=(3, 5, 2, 7))
@example(kind="gru", layers=1, bidir=False, bias=True, batch_first=True, sizes=(3, 5, 2, 7))
@example(kind="lstm", layers=2, bidir=True, bias=True, batch_first=True, sizes=(3, 5, 2, 7))
@example(kind="gru", layers=2, bidir=True, bias=True, batch_first=False, sizes=(3, 5, 2, 7))
@example(kind="rnn_relu", layers=2, bidir=True, bias=False, batch_first=True, sizes=(3, 5, 2, 7))
@given(
    kind=st.sampled_from(KINDS),
    layers=st.integers(1, 3),
    bidir=st.booleans(),
    bias=st.booleans(),
    batch_first=st.booleans(),
    sizes=st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 3), st.integers(1, 9)),
)
def test_outputs_and_final_carry_match_torch(kind, layers, bidir, bias, batch_first, sizes):
    """Outputs and h_n/c_n equal torch's forward pass from a random initial carry."""
    features, hidden, batch, steps = sizes
    module = _torch_module(
        kind,
        features,
        hidden,
        num_layers=layers,
        bidirectional=bidir,
        bias=bias,
        batch_first=batch_first,
    )
    model, params = from_torch(module)
    expected_type = rnnlab.Cell if layers == 1 and not bidir else rnnlab.Layer
    assert isinstance(model, expected_type)

    rng = np.random.default_rng(sum(sizes))
    x = rng.normal(size=(batch, steps, features)).astype(np.float32)
    h0 = rng.normal(size=(layers * (2 if bidir else 1), batch, hidden)).astype(np.float32)
    c0 = rng.normal(size=h0.shape).astype(np.float32)
    torch_x = torch.from_numpy(x if batch_first else x.swapaxes(0, 1).copy())
    torch_carry = (
        (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else (torch.from_numpy(h0))
    )
    with torch.no_grad():
        torch_ys, torch_final = module(torch_x, torch_carry)
    torch_ys = torch_ys.numpy() if batch_first else torch_ys.numpy().swapaxes(0, 1)

    carry = from_torch_carry(model, h0, c0 if kind == "lstm" else None)
    ys, final = _run(model, params, jnp.asarray(x), carry=carry)
    _assert_close(f"{kind} outputs", ys, torch_ys)
    _assert_final_carry_close(kind, kind, final, torch_final)


@settings(max_examples=3)
@example(kind="lstm", bidir=True, lengths=[5, 1, 3])
@example(kind="gru", bidir=True, lengths=[2, 5, 4])
@example(kind="rnn_tanh", bidir=False, lengths=[1, 5, 3])
@given(
    kind=st.sampled_from(KINDS),
    bidir=st.booleans(),
    lengths=st.lists(st.integers(1, 5), min_size=1, max_size=4),
)
def test_padded_batch_matches_pack_padded_sequence(kind, bidir, lengths):
    """Padded outputs and final carries equal torch's packed-sequence run.

    Oracle: ``pad_packed_sequence(module(pack_padded_sequence(x, lengths)))``,
    whose padded outputs are exact zeros and whose ``h_n`` (``c_n``) is taken at
    each sequence's last valid step, in both directions.
    """
    features, hidden, steps = 3, 4, 5
    module = _torch_module(
        kind,
        features,
        hidden,
        num_layers=2,
        bidirectional=bidir,
        batch_first=True,
        seed=len(lengths),
    )
    model, params = from_torch(module)
    x = np.random.default_rng(len(lengths)).normal(size=(len(lengths), steps, features))
    x = x.astype(np.float32)
    packed = pack_padded_sequence(
        torch.from_numpy(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        torch_out, torch_final = module(packed)
    torch_ys, _ = pad_packed_sequence(torch_out, batch_first=True, total_length=steps)

    ys, final = _run(model, params, jnp.asarray(x), lengths=jnp.asarray(lengths))
    padded = np.arange(steps)[None, :] >= np.asarray(lengths)[:, None]
    assert np.all(np.asarray(ys)[padded] == 0.0)
    _assert_close(f"{kind} packed outputs", ys, torch_ys.numpy())
    _assert_final_carry_close(f"{kind} packed", kind, final, torch_final)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_torch_autograd(kind):
    """d loss / d params equals torch's autograd for a 2-layer bidirectional packed run.

    The loss is a fixed random projection of the outputs and of ``h_n``; torch's
    gradients are mapped to our layout with the same ``from_torch`` (the mapping of
    values itself is checked by the forward tests).
    """
    lengths = [4, 2, 3]
    module = _torch_module(kind, 3, 4, num_layers=2, bidirectional=True, batch_first=True)
    model, params = from_torch(module)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 3)).astype(np.float32)
    out_weight = rng.normal(size=(3, 4, 8)).astype(np.float32)
    carry_weight = rng.normal(size=(4, 3, 4)).astype(np.float32)

    packed = pack_padded_sequence(
        torch.from_numpy(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    torch_out, torch_final = module(packed)
    torch_ys, _ = pad_packed_sequence(torch_out, batch_first=True, total_length=4)
    h_n = torch_final[0] if kind == "lstm" else torch_final
    loss = (torch_ys * torch.from_numpy(out_weight)).sum() + (
        h_n * torch.from_numpy(carry_weight)
    ).sum()
    loss.backward()
    grad_module = copy.deepcopy(module)
    with torch.no_grad():
        for param, source in zip(grad_module.parameters(), module.parameters(), strict=True):
            param.copy_(source.grad)
    _, expected = from_torch(grad_module)

    def loss_fn(p):
        ys, final = _run(model, p, jnp.asarray(x), lengths=jnp.asarray(lengths))
        carry = to_torch_carry(final)
        h = carry[0] if kind == "lstm" else carry
        return jnp.sum(ys * out_weight) + jnp.sum(h * carry_weight)

    value, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    _assert_close(f"{kind} loss", value, loss.item(), atol=1e-4)
    assert jax.tree.structure(grads) == jax.tree.structure(expected)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        _assert_close(f"{kind} gradients", ours, theirs, atol=1e-4)


@pytest.mark.parametrize(
    "kind, options",
    [
        ("lstm", dict(num_layers=3, bidirectional=True, dropout=0.25)),
        ("gru", dict(num_layers=1, bidirectional=True, batch_first=True)),
        ("rnn_relu", dict(num_layers=2)),
        ("rnn_tanh", dict(num_layers=1, bias=False)),
        ("gru", dict(num_layers=2, bias=False)),
    ],
)
def test_to_torch_round_trips_exactly(kind, options):
    """to_torch(from_torch(m)) rebuilds m: same class, options and bit-identical weights."""
    module = _torch_module(kind, 3, 4, **options)
    model, params = from_torch(module)
    # The layer records its cells' activation and its dropout: only bias and the layout
    # are torch-side options.
    back = to_torch(model, params, bias=module.bias, batch_first=module.batch_first)
    assert type(back) is type(module)
    for attribute in (
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "mode",
    ):
        assert getattr(back, attribute) == getattr(module, attribute), attribute
    assert back.state_dict().keys() == module.state_dict().keys()
    for name, value in module.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name


def test_from_torch_maps_dropout_to_dropout_rate():
    """torch's inter-layer dropout becomes stacked(dropout_rate=...): applying the layer
    in training mode needs a key, and in eval mode it equals torch's eval-mode output."""
    module = _torch_module("lstm", 3, 4, num_layers=2, dropout=0.5, batch_first=True).eval()
    layer, params = from_torch(module)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="key"):
        layer.apply(params, jnp.asarray(x))
    with torch.no_grad():
        expected, _ = module(torch.from_numpy(x))
    ys, _ = _run(layer, params, jnp.asarray(x))
    _assert_close("lstm outputs", ys, expected.numpy())
    dropped = jax.jit(lambda p, xs, key: layer.apply(p, xs, key=key)[0])(
        params, jnp.asarray(x), jax.random.key(0)
    )
    assert not np.allclose(dropped, ys)


def test_from_torch_rejects_projections_and_other_modules():
    """proj_size > 0 and non-RNN modules raise ValueError naming the problem."""
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="torch.nn.RNN, LSTM or GRU"):
        from_torch(torch.nn.Linear(3, 4))


def test_to_torch_rejects_what_torch_cannot_express():
    """Reverse-only layers, non-concatenating merges, unknown activations, mixed
    activations, cells without a torch equivalent (a custom cell with an LSTM's four
    gates and parameter layout is not an LSTM), and bias=False with non-zero biases."""
    cell, params = from_torch(_torch_module("rnn_tanh", 4, 4))  # square: stackable
    with pytest.raises(ValueError, match="reverse"):
        to_torch(rnnlab.recurrent(cell, reverse=True), params)
    summed = rnnlab.bidirectional(cell, merge="sum")
    summed_params = {"forward": params, "backward": params}
    with pytest.raises(ValueError, match="concat"):
        to_torch(summed, summed_params)
    with pytest.raises(ValueError, match="concat"):
        to_torch(rnnlab.stacked([summed, summed]), (summed_params, summed_params))
    relu = rnnlab.rnn(4, activation="relu")
    with pytest.raises(ValueError, match="activation"):
        to_torch(rnnlab.stacked([cell, relu]), (params, params))
    with pytest.raises(ValueError, match="nonlinearity"):
        to_torch(rnnlab.rnn(4, activation="sigmoid"), params)
    lstm = rnnlab.lstm(4)
    impostor = rnnlab.Cell(
        name="my_lstm", hidden_size=4, init=lstm.init, initial_carry=lstm.initial_carry,
        step=lambda p, c, x: lstm.step(p, c, 2.0 * x), output=lstm.output,
    )  # fmt: skip
    lstm_params = lstm.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match="no torch equivalent"):
        to_torch(impostor, lstm_params)
    with pytest.raises(ValueError, match="no torch equivalent"):
        to_torch(rnnlab.stacked([impostor, impostor]), (lstm_params, lstm_params))
    with pytest.raises(ValueError, match="bias=False"):
        to_torch(cell, params, bias=False)
