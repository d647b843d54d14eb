"""AntisymmetricRNN (Chang, Chen, Haber & Chi 2019): forward Euler on a stable ODE."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnlab import _checks
from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size, check_input_size


def antisymmetric(
    hidden_size: int,
    *,
    epsilon=0.01,
    gamma=0.01,
    recurrent_std=1.0,
    gated: bool = False,
    param_dtype=jnp.float32,
) -> Cell:
    r"""AntisymmetricRNN: ``h`` follows the ODE ``h' = tanh(M h + V x + b)`` by Euler steps::

        M   = W - W^T - gamma I                                   # [H, H]
        h_t = h_{t-1} + epsilon * tanh(h_{t-1} M + x_t V + b)      # h: [..., H]

    and, with ``gated=True`` (the paper's gated variant, which shares ``M``)::

        g_t = sigmoid(h_{t-1} M + x_t V_g + b_g)
        h_t = h_{t-1} + epsilon * g_t * tanh(h_{t-1} M + x_t V + b)

    The paper writes column vectors, ``(W - W^T - gamma I) h``; in rnnlab's ``h @ W``
    layout the parameter ``weight_hh`` is the paper's ``W`` transposed, so ``M`` above is
    the transpose of the paper's, with the same spectrum.  ``W - W^T`` is antisymmetric,
    so its eigenvalues are purely imaginary, and the Jacobian of the ODE,
    ``diag(tanh') (W - W^T)``, has purely imaginary eigenvalues too: neither exploding nor
    vanishing.  Forward Euler's step has eigenvalues ``1 + epsilon lambda``, of modulus
    above 1 for imaginary ``lambda``; the diffusion ``gamma > 0`` moves the real parts of
    ``lambda`` into ``[-gamma max tanh', -gamma min tanh']`` to keep the step stable.

    Parameters: ``weight_hh = W: [H, H]``, ``weight_ih: [F, H]`` (``[F, 2H]`` gated: the
    blocks ``V, V_g``), ``bias: [H]`` (``[2H]`` gated).  Init as in the paper's
    Appendix C: ``V ~ N(0, 1/F)``, ``W ~ N(0, recurrent_std^2 / H)``, biases 0.

    Args:
      hidden_size: ``H``.
      epsilon: the step size ``epsilon > 0``; default 0.01, from the paper's grid
        ``{0.01, 0.1, 1}`` (the per-task choices are in its appendix, not checked here).
      gamma: the diffusion ``gamma >= 0``; default 0.01.
      recurrent_std: ``sigma_w`` of the paper's init of ``W``; default 1 (its grid is
        ``{0, 1, 2, 4, 8, 16}``).  ``epsilon``, ``gamma`` and ``recurrent_std`` may be
        arrays (sweeps vmap over them).
      gated: use the gated variant.
      param_dtype: dtype of the parameters and the carry.

    Returns:
      A :class:`Cell` whose carry and output are ``h: [..., H]``; its
      ``recurrent_weight`` is ``M``.

    References:
      B. Chang, M. Chen, E. Haber, E. H. Chi, "AntisymmetricRNN: A Dynamical System View
      on Recurrent Neural Networks", ICLR 2019.  arXiv:1902.09689.
    """
    hidden_size = check_hidden_size(hidden_size)
    _checks.hyperparameter("epsilon", epsilon, minimum=0.0, strict_minimum=True)
    _checks.hyperparameter("gamma", gamma, minimum=0.0)
    _checks.hyperparameter("recurrent_std", recurrent_std, minimum=0.0)
    if not isinstance(gated, bool):
        raise ValueError(f"gated must be a bool, got {gated!r}")
    width = 2 * hidden_size if gated else hidden_size

    def init(key, input_size):
        input_size = check_input_size(input_size)
        k_ih, k_hh = jax.random.split(key)
        std = jnp.asarray(recurrent_std, param_dtype) / math.sqrt(hidden_size)
        return {
            "weight_ih": jax.random.normal(k_ih, (input_size, width), param_dtype)
            / math.sqrt(input_size),
            "weight_hh": (std * jax.random.normal(k_hh, (hidden_size, hidden_size), param_dtype)),
            "bias": jnp.zeros((width,), param_dtype),
        }

    def recurrent_weight(params):
        weight = params["weight_hh"]
        diffusion = jnp.asarray(gamma, param_dtype) * jnp.eye(hidden_size, dtype=param_dtype)
        return weight - jnp.swapaxes(weight, -1, -2) - diffusion

    def step(params, h, x):
        recurrent = h @ recurrent_weight(params)
        projected = x @ params["weight_ih"] + params["bias"]
        if gated:
            projected, gate_input = jnp.split(projected, 2, axis=-1)
        update = jnp.tanh(recurrent + projected)
        if gated:
            update = jax.nn.sigmoid(recurrent + gate_input) * update
        h = h + jnp.asarray(epsilon, param_dtype) * update
        return h, h

    return Cell(
        name="antisymmetric",
        hidden_size=hidden_size,
        init=init,
        initial_carry=_dense.zeros(hidden_size, param_dtype),
        step=step,
        input_size=_dense.input_size,
        recurrent_weight=recurrent_weight,
        hyperparameters=dict(
            hidden_size=hidden_size,
            epsilon=epsilon,
            gamma=gamma,
            recurrent_std=recurrent_std,
            gated=gated,
        ),
    )
