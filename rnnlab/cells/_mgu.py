"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016): a GRU with a single gate."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size


def mgu(
    hidden_size: int,
    *,
    recurrent_init="uniform",
    recurrent_scale=1.0,
    input_init="uniform",
    bias_init="zeros",
    param_dtype=jnp.float32,
) -> Cell:
    r"""MGU: one forget gate ``f`` both forgets and resets::

        f_t  = sigmoid(h_{t-1} W_hf + x_t W_if + b_f)
        hc_t = tanh((f_t * h_{t-1}) W_hh + x_t W_ih + b_h)
        h_t  = (1 - f_t) * h_{t-1} + f_t * hc_t                # h: [..., H]

    (Zhou et al. 2016, in rnnlab's ``x @ W`` layout).  The reset ``f_t * h_{t-1}``
    enters the matmul, so this cell does not fit the dense layout of
    :mod:`rnnlab.cells._dense` (whose pointwise part sees ``h @ W_hh`` only) and has no
    fused path.

    Parameters: ``weight_ih: [F, 2H]`` (blocks ``W_if, W_ih``), ``weight_hh: [H, 2H]``
    (blocks ``W_hf, W_hh``), ``bias: [2H]`` (``b_f, b_h``): one bias per gate, as in
    the paper.  The paper fixes no init; the defaults are the GRU's here (torch's
    ``U(+-1/sqrt(H))`` weights, zero biases).

    Args:
      hidden_size: ``H``.
      recurrent_init: initializer of ``weight_hh``; ``"orthogonal"`` and
        ``"identity"`` act per block (see :mod:`rnnlab.initializers`).
      recurrent_scale: multiplies ``weight_hh`` after initialization; may be an array.
      input_init: initializer of ``weight_ih``.
      bias_init: initializer of ``bias``.
      param_dtype: dtype of the parameters and the carry.

    Returns:
      A :class:`Cell` whose carry and output are ``h: [..., H]``; its
      ``recurrent_weight`` is ``weight_hh``, two ``[H, H]`` blocks.

    References:
      G.-B. Zhou, J. Wu, C.-L. Zhang, Z.-H. Zhou, "Minimal Gated Unit for Recurrent Neural
      Networks", International Journal of Automation and Computing 13(3):226-234, 2016.
      arXiv:1603.09420.
    """
    hidden_size = check_hidden_size(hidden_size)
    dense_init = _dense.make_init(
        hidden_size,
        2,
        input_init=input_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        recurrent_scale=recurrent_scale,
        param_dtype=param_dtype,
    )

    def init(key, input_size):
        params = dense_init(key, input_size)
        # The paper has one bias per gate, not the dense layout's two.
        return {
            "weight_ih": params["weight_ih"],
            "weight_hh": params["weight_hh"],
            "bias": params["bias_ih"],
        }

    def step(params, h, x):
        x_f, x_h = jnp.split(x @ params["weight_ih"] + params["bias"], 2, axis=-1)
        w_f, w_h = jnp.split(params["weight_hh"], 2, axis=-1)
        f = jax.nn.sigmoid(h @ w_f + x_f)
        candidate = jnp.tanh((f * h) @ w_h + x_h)
        h = (1.0 - f) * h + f * candidate
        return h, h

    return Cell(
        name="mgu",
        hidden_size=hidden_size,
        init=init,
        initial_carry=_dense.zeros(hidden_size, param_dtype),
        step=step,
        input_size=_dense.input_size,
        recurrent_weight=lambda params: params["weight_hh"],
        hyperparameters=dict(
            hidden_size=hidden_size,
            recurrent_init=recurrent_init,
            recurrent_scale=recurrent_scale,
            input_init=input_init,
            bias_init=bias_init,
        ),
    )
