r"""Real-gated linear recurrent unit, RG-LRU (De et al. 2024, Griffin; recurrentgemma's code)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import _checks
from rnnlab.cells import _diagonal
from rnnlab.cells._cell import Cell, check_hidden_size, check_input_size

#: The bound on ``d sqrt(x) / dx`` in :func:`sqrt_bounded_derivative` (recurrentgemma's).
MAX_SQRT_GRADIENT = 1000.0

A_INITS = ("paper", "recurrentgemma")


@jax.custom_jvp
def sqrt_bounded_derivative(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` whose derivative is clipped at :data:`MAX_SQRT_GRADIENT`.

    ``d sqrt(x)/dx = 1 / (2 sqrt(x))`` is infinite at ``x = 0``, where the RG-LRU's
    ``sqrt(1 - a_t^2)`` sits as ``a_t -> 1``; here it is ``1 / (2 sqrt(max(x, x_0)))``
    with ``x_0 = 1 / (4 MAX_SQRT_GRADIENT^2)``, i.e. at most ``MAX_SQRT_GRADIENT``.
    recurrentgemma writes this as a ``custom_vjp``; a ``custom_jvp`` gives the same
    reverse-mode gradient and also serves forward mode (``jax.jvp``).
    """
    return jnp.sqrt(x)


@sqrt_bounded_derivative.defjvp
def _sqrt_bounded_derivative_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    floor = 1.0 / (4.0 * MAX_SQRT_GRADIENT**2)
    return jnp.sqrt(x), 0.5 * dx / jnp.sqrt(jnp.maximum(x, floor))


def _check_hyperparameters(a_min, a_max, c, a_init):
    a_min, a_max, c = _checks.concrete(a_min), _checks.concrete(a_max), _checks.concrete(c)
    for argument, value in (("a_min", a_min), ("a_max", a_max)):
        if value is not None:
            _checks.number(argument, value, minimum=0.0, maximum=1.0,
                           strict_minimum=True, strict_maximum=True)  # fmt: skip
    if a_min is not None and a_max is not None and a_min >= a_max:
        raise ValueError(f"a_min={a_min} must be below a_max={a_max}")
    if c is not None:
        _checks.number("c", c, minimum=0.0, strict_minimum=True)
    _checks.choice("a_init", a_init, A_INITS)


def rglru(
    hidden_size: int,
    *,
    a_min=0.9,
    a_max=0.999,
    c=8.0,
    a_init: str = "paper",
    param_dtype=jnp.float32,
) -> Cell:
    r"""RG-LRU, the recurrence of Griffin and Hawk (De et al. 2024), after an input projection::

        u_t = x_t W_in + b_in                                 # [..., H], from x: [..., F]
        r_t = sigmoid(u_t W_a + b_a)                          # recurrence gate
        i_t = sigmoid(u_t W_x + b_x)                          # input gate
        log a_t = -c * softplus(Lambda) * r_t                 # a_t = a^(c r_t)
        h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t)  # h: [..., H]
        y_t = h_t

    with ``a = exp(-softplus(Lambda)) = sigmoid(-Lambda)`` (the paper writes
    ``a = sigmoid(Lambda)``; recurrentgemma's sign, kept here, stores ``-Lambda``).

    Input projection (a choice): in the Griffin block the RG-LRU reads an ``H``-wide
    input, a linear map (then a short convolution) of the block's input.  As a cell of
    input size ``F`` it first projects, ``u_t = x_t W_in + b_in``, and the gates read
    ``u_t`` exactly as recurrentgemma's gates read the RG-LRU's input; with ``F = H``
    and ``W_in = I, b_in = 0`` it is the paper's RG-LRU.  The convolution and the
    block's GeLU branch are not part of the cell.

    Numerics, as in recurrentgemma: ``log a_t`` is formed directly and the square root
    of ``1 - a_t^2`` (here ``-expm1(2 log a_t)``, exact near ``a_t = 1``) has its
    derivative bounded by :func:`sqrt_bounded_derivative` at :data:`MAX_SQRT_GRADIENT`.
    The recurrence is linear in ``h``, so :func:`rnnlab.unroll` runs it sequentially or
    as an associative scan (``path="parallel"``).  Segment starts are ``unroll``'s
    ``resets``, which restart from ``h_0 = 0``.  Deviation: recurrentgemma also skips
    the ``sqrt(1 - a_t^2)`` factor at a segment's first step (``h_1 = i_1 * u_1``);
    a cell does not see segment starts, so here every step is normalized, as in the
    paper's equations.

    Params and init: ``W_in: [F, H] ~ N(0, 1/F)``, ``b_in = 0`` (Griffin's input
    linear); ``W_gates: [H, 2H]`` (columns ``W_a | W_x``) ``~ N(0, 1/H)``, ``b_gates = 0``
    (recurrentgemma's gates with one block; it uses block-diagonal gates with
    ``num_heads`` blocks); ``Lambda: [H]``.  With ``a_init="paper"``, ``Lambda`` is drawn
    so that ``a^c`` is uniform on ``[a_min, a_max]``, as the paper states.  With
    ``a_init="recurrentgemma"``, as its code does it: ``a`` itself (not ``a^c``) on
    the ring ``[a_min, a_max]``, uniform in ``a^2``; then ``a_t`` at ``r_t = 1/2`` lies in
    ``[0.66, 0.996]`` instead of ``[0.949, 0.9995]`` for the defaults.

    Args:
      hidden_size: ``H``, the state and output size.
      a_min, a_max: the interval of the init (see ``a_init``), ``0 < a_min < a_max < 1``.
        May be traced arrays (sweeps vmap over them).
      c: the paper's constant in ``a_t = a^(c r_t)``, ``> 0``; may be traced.
      a_init: ``"paper"`` or ``"recurrentgemma"``, see above.
      param_dtype: the dtype of the parameters and the state.

    Returns:
      A :class:`Cell` whose carry and output are ``h: [..., H]``.

    References:
      S. De, S. L. Smith, A. Fernando, A. Botev, G. Cristian-Muraru, A. Gu, R. Haroun,
      L. Berrada, Y. Chen, S. Srinivasan, G. Desjardins, A. Doucet, D. Budden, Y. W. Teh,
      R. Pascanu, N. De Freitas, C. Gulcehre, "Griffin: Mixing gated linear recurrences
      with local attention for efficient language models", arXiv:2402.19427, 2024.
      Code: github.com/google-deepmind/recurrentgemma (``jax/layers.py``, ``RGLRU``).
    """
    hidden_size = check_hidden_size(hidden_size)
    _check_hyperparameters(a_min, a_max, c, a_init)

    def init(key, input_size):
        input_size = check_input_size(input_size)
        k_in, k_gates, k_a = jax.random.split(key, 3)
        low = jnp.asarray(a_min, param_dtype)
        high = jnp.asarray(a_max, param_dtype)
        if a_init == "paper":  # a^c = u uniform on [a_min, a_max]: -log a = -log(u) / c
            u = jax.random.uniform(k_a, (hidden_size,), param_dtype, low, high)
            minus_log_a = -jnp.log(u) / jnp.asarray(c, param_dtype)
        else:  # a^2 uniform on [a_min^2, a_max^2]: -log a = -log(a^2) / 2
            u = jax.random.uniform(k_a, (hidden_size,), param_dtype, low**2, high**2)
            minus_log_a = -0.5 * jnp.log(u)
        return {
            "weight_in": jax.random.normal(k_in, (input_size, hidden_size), param_dtype)
            / math.sqrt(input_size),
            "bias_in": jnp.zeros((hidden_size,), param_dtype),
            "weight_gates": jax.random.normal(k_gates, (hidden_size, 2 * hidden_size), param_dtype)
            / math.sqrt(hidden_size),
            "bias_gates": jnp.zeros((2 * hidden_size,), param_dtype),
            "a_param": jnp.log(jnp.expm1(minus_log_a)),  # softplus(Lambda) = -log a
        }

    def coefficients(params, xs):
        u = xs @ params["weight_in"] + params["bias_in"]
        gates = jax.nn.sigmoid(u @ params["weight_gates"] + params["bias_gates"])
        r, i = jnp.split(gates, 2, axis=-1)
        log_a = -jnp.asarray(c, u.dtype) * jax.nn.softplus(params["a_param"]) * r
        return jnp.exp(log_a), sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a)) * (i * u)

    def initial_carry(batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), hidden_size), param_dtype)

    def units(params):
        # Gate column j and Lambda[j] drive unit j mod H; u = x W_in + b_in feeds every
        # unit's gates, so the input projection drives several units (-1).
        by_column = lambda p: np.broadcast_to(np.arange(p.shape[-1]) % hidden_size, p.shape)  # noqa: E731
        return {
            "weight_in": np.full(params["weight_in"].shape, -1),
            "bias_in": np.full(params["bias_in"].shape, -1),
            "weight_gates": by_column(params["weight_gates"]),
            "bias_gates": by_column(params["bias_gates"]),
            "a_param": by_column(params["a_param"]),
        }

    return _diagonal.make_cell(
        "rglru",
        hidden_size,
        init=init,
        initial_carry=initial_carry,
        coefficients=coefficients,
        units=units,
        input_size=lambda params: params["weight_in"].shape[-2],
        hyperparameters=dict(hidden_size=hidden_size, a_min=a_min, a_max=a_max, c=c, a_init=a_init),
    )
