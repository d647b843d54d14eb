"""Independently recurrent neural network (Li et al. 2018): a diagonal recurrent weight."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import _checks
from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size, check_input_size

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


def _concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) or jnp.ndim(v) for v in values)


def indrnn(
    hidden_size: int,
    *,
    activation: str = "relu",
    recurrent_min=0.0,
    recurrent_max=1.0,
    input_std=0.001,
    constrain: bool = True,
    param_dtype=jnp.float32,
) -> Cell:
    r"""IndRNN: every unit has its own scalar recurrent weight::

        h_t = sigma(x_t W + u * h_{t-1} + b)          # u: [H], h: [..., H]

    so ``dh_t/dh_{t-1} = diag(sigma'(.) u)`` and the gradient through ``k`` steps of
    unit ``i`` is a product of ``k`` scalars ``sigma' u_i``.  With ReLU it is ``u_i^k``
    while the unit is active: keeping ``|u_i|`` in ``[(1/m)^{1/T}, m^{1/T}]`` keeps it in
    ``[1/m, m]`` over ``T`` steps (the paper's constraint on ``|u|``).

    Choices, following the authors' code (Sunnydreamrain/IndRNN_Theano_Lasagne,
    ``adding.py``): ``u ~ U(recurrent_min, recurrent_max)``, ``W ~ N(0, input_std^2)``,
    ``b = 0``.  The authors clip ``u`` to ``[-U_bound, U_bound]`` before every
    optimizer step, with ``U_bound = MAG^{1/T}`` (``MAG = 2`` for the adding problem,
    ``T`` the sequence length) for ReLU and ``(MAG / 0.9^{T/10})^{1/T}`` for tanh; their
    README suggests ``[-1, 1]`` for very long sequences, the default here.  A cell cannot
    act between optimizer steps, so with ``constrain`` the step itself uses
    ``clip(u, -recurrent_max, recurrent_max)``: the same function of the input, but a
    ``u`` pushed past the bound acts as the bound and gets no gradient (only momentum or
    weight decay move it back), where projected gradient descent would keep it on the
    bound, free to move inward.

    Args:
      hidden_size: ``H``.
      activation: ``"relu"`` (default; the paper's main choice) or ``"tanh"``.
      recurrent_min, recurrent_max: the init range of ``u``; ``recurrent_max > 0`` is
        also the constraint's bound and ``-recurrent_max <= recurrent_min <=
        recurrent_max``.  Defaults ``[0, 1]`` (the authors' PyTorch default); their adding
        code uses ``[0, 2^{1/T}]`` (ReLU) and ``[-U_bound, U_bound]`` (tanh), and
        ``[(1/2)^{1/T}, 2^{1/T}]`` for the last layer.
      input_std: the standard deviation of ``W``; default 0.001 (the authors' adding
        code).  ``recurrent_min``, ``recurrent_max`` and ``input_std`` may be arrays.
      constrain: clip ``u`` to ``[-recurrent_max, recurrent_max]`` in the step.
      param_dtype: dtype of the parameters and the carry.

    Returns:
      A :class:`Cell` whose carry and output are ``h: [..., H]``.  Its
      ``recurrent_weight`` is ``diag(u)`` (clipped when ``constrain``): ``[H, H]``.

    References:
      S. Li, W. Li, C. Cook, C. Zhu, Y. Gao, "Independently Recurrent Neural Network
      (IndRNN): Building A Longer and Deeper RNN", CVPR 2018, pp. 5457-5466.
      arXiv:1803.04831.
    """
    hidden_size = check_hidden_size(hidden_size)
    _checks.choice("activation", activation, ACTIVATIONS)
    _checks.hyperparameter("recurrent_max", recurrent_max, minimum=0.0, strict_minimum=True)
    _checks.hyperparameter("recurrent_min", recurrent_min)
    _checks.hyperparameter("input_std", input_std, minimum=0.0)
    if _concrete(recurrent_min, recurrent_max) and not (
        -float(recurrent_max) <= float(recurrent_min) <= float(recurrent_max)
    ):
        raise ValueError(
            f"recurrent_min={recurrent_min} must lie in [-recurrent_max, recurrent_max] = "
            f"[{-float(recurrent_max)}, {float(recurrent_max)}]"
        )
    if not isinstance(constrain, bool):
        raise ValueError(f"constrain must be a bool, got {constrain!r}")
    sigma = ACTIVATIONS[activation]

    def init(key, input_size):
        input_size = check_input_size(input_size)
        k_ih, k_hh = jax.random.split(key)
        low, high = (jnp.asarray(v, param_dtype) for v in (recurrent_min, recurrent_max))
        return {
            "weight_ih": jnp.asarray(input_std, param_dtype)
            * jax.random.normal(k_ih, (input_size, hidden_size), param_dtype),
            "weight_hh": jax.random.uniform(k_hh, (hidden_size,), param_dtype, low, high),
            "bias": jnp.zeros((hidden_size,), param_dtype),
        }

    def recurrent_vector(params):
        u = params["weight_hh"]
        if not constrain:
            return u
        bound = jnp.asarray(recurrent_max, param_dtype)
        # where, not clip: on the bound itself the gradient passes whole (clip halves it).
        return jnp.where(u > bound, bound, jnp.where(u < -bound, -bound, u))

    def step(params, h, x):
        h = sigma(x @ params["weight_ih"] + params["bias"] + recurrent_vector(params) * h)
        return h, h

    def recurrent_weight(params):
        u = recurrent_vector(params)
        return u[..., :, None] * jnp.eye(hidden_size, dtype=u.dtype)

    return Cell(
        name="indrnn",
        hidden_size=hidden_size,
        init=init,
        initial_carry=_dense.zeros(hidden_size, param_dtype),
        step=step,
        input_size=_dense.input_size,
        recurrent_weight=recurrent_weight,
        hyperparameters=dict(
            hidden_size=hidden_size,
            activation=activation,
            recurrent_min=recurrent_min,
            recurrent_max=recurrent_max,
            input_std=input_std,
            constrain=constrain,
        ),
    )
