r"""The vanishing-gradient regularizer Omega of Pascanu, Mikolov & Bengio 2013.

For a cost ``C`` of a run ``x_1..x_T`` of the carry (``x_k = F(x_{k-1}, u_k)``), with
``g_k = dC/dx_k`` the total derivative (through the outputs and every later step)::

    Omega = mean over (k, example) with |g_k|^2 >= bound of
            ( |g_k dx_k/dx_{k-1}|^2 / |g_k|^2 - 1 )^2,        k = 1..T

It is small when every one-step Jacobian preserves the norm of the error flowing back
along the direction the error actually takes, which keeps gradients from vanishing.

Which form.  The paper's equation (Section 3.3; the Theory section of REFERENCES.md)
is ``sum_k (|g_{k+1} dx_{k+1}/dx_k| / |g_{k+1}| - 1)^2``: norms, not squared norms,
summed.  The authors' code (pascanur/trainingRNNs, ``RNN.py``), whose protocol the
temporal-order experiment reproduces, uses squared norms, skips the terms with
``|g|^2 < 1e-20`` and averages the others over steps and examples.  This implements the
code's form: it is what their results were obtained with, the ratio of squared norms
is smooth where the norm's square root is not (at a zero vector), and the mean keeps
the strength alpha = 2 independent of T.  When no term is kept, Omega is 0.

Gradient.  By default Omega is differentiated exactly (its gradient matches finite
differences): the errors ``g_k`` are themselves functions of the params.  Their code
instead holds ``g_k`` and the states constant and differentiates only the explicit
``W_hh`` in ``dx_k/dx_{k-1}``; ``constant_error=True`` holds ``g_k`` and ``x_{k-1}``
constant (the Jacobian's dependence on every parameter is still differentiated, so for
the tanh RNN it also reaches ``W_ih`` and the biases through ``tanh'``).

Reference: R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent
neural networks", ICML 2013.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from rnnlab.cells import Cell
from rnnlab.gradients import _base

__all__ = ["PASCANU_BOUND", "pascanu_regularizer"]

#: Terms whose ``|dC/dx_k|^2`` is below this are skipped (the code's ``state['bound']``).
PASCANU_BOUND = 1e-20


def pascanu_regularizer(
    cell: Cell,
    params,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    carry=None,
    resets: jax.Array | None = None,
    output: Callable | None = None,
    bound: float = PASCANU_BOUND,
    constant_error: bool = False,
) -> jax.Array:
    """Pascanu et al.'s Omega for any cell (see the module docstring for the definition).

    Args:
      cell: the cell.
      params: the cell's params.
      xs: ``[*batch, T, F]`` inputs.
      loss_fn: the cost ``C(ys)`` of the outputs ``ys [*batch, T, Y]`` (scalar).
      carry: the initial carry ``x_0``; default ``cell.initial_carry(batch)``.
      resets: optional bool ``[*batch, T]``: before step ``k`` the carry restarts from
        ``cell.initial_carry`` (a document boundary in a stream).  No error flows across
        a reset, and the term of step ``k`` is the Jacobian at the restored carry, as for
        the first step of a sequence: Omega of every document as if it stood alone.
      output: ``output(carry) -> y``, the output as a function of the carry (``dC/dx_k``
        must include the path through ``y_k``); default the cell's own output contract,
        ``cell.output_of(params, carry, x)``.
      bound: terms with ``|dC/dx_k|^2 < bound`` are skipped.
      constant_error: hold ``dC/dx_k`` and ``x_{k-1}`` constant when differentiating,
        as the authors' code does.

    Returns:
      The scalar Omega, differentiable with respect to ``params``.

    Raises:
      ValueError: for ``xs`` that is not ``[*batch, T, F]``, or a pytree carry without
        a declared ``output`` (from :meth:`rnnlab.cells.Cell.output_of`).
    """
    if output is None:

        def read(carry, x):
            return cell.output_of(params, carry, x)
    else:

        def read(carry, x):
            del x
            return output(carry)

    xs = jnp.asarray(xs)
    features = None if cell.input_size is None else cell.input_size(params)
    if xs.ndim < 2 or (features is not None and xs.shape[-1] != features):
        raise ValueError(f"xs must be [*batch, T, F] with F={features}, got {xs.shape}")
    batch_shape = xs.shape[:-2]
    start = _base.initial_carry(cell, batch_shape, carry)
    time_major = jnp.moveaxis(xs, -2, 0)
    if resets is None:
        resets = jnp.zeros(xs.shape[:-1], bool)
    if jnp.shape(resets) != xs.shape[:-1]:
        raise ValueError(f"resets must be bool [*batch, T] = {xs.shape[:-1]}, got {resets.shape}")
    time_resets = jnp.moveaxis(jnp.asarray(resets, bool), -1, 0)  # [T, *batch]
    initial = cell.initial_carry(batch_shape)

    def transition(p, c, x):
        return cell.step(p, c, x)[0]

    def run(perturbation):
        def body(c, scanned):
            x, reset, delta = scanned
            c = _base.tree_where(reset, initial, c)
            c = _base.tree_add(transition(params, c, x), delta)
            return c, c

        _, carries = jax.lax.scan(body, start, (time_major, time_resets, perturbation))
        ys = jnp.moveaxis(jax.vmap(read)(carries, time_major), 0, -2)  # [*batch, T, Y]
        return loss_fn(ys), carries

    zeros = jax.tree.map(
        lambda a: jnp.zeros((xs.shape[-2], *a.shape), a.dtype), start
    )  # [T, *batch, ...]
    # The zero perturbation of every x_k: d C / d perturbation_k = g_k = dC/dx_k.
    errors, carries = jax.grad(run, has_aux=True)(zeros)
    previous = jax.tree.map(lambda s, c: jnp.concatenate([s[None], c[:-1]], 0), start, carries)
    previous = jax.vmap(_base.tree_where, (0, None, 0))(time_resets, initial, previous)
    if constant_error:
        errors, previous = jax.lax.stop_gradient((errors, previous))

    def back_one_step(error, before, x):
        """``g_k dx_k/dx_{k-1}`` at ``x_{k-1} = before`` (examples stay independent)."""
        _, pullback = jax.vjp(lambda c: transition(params, c, x), before)
        return pullback(error)[0]

    through = jax.vmap(back_one_step)(errors, previous, time_major)

    def squared_norm(tree):  # [T, *batch]
        return sum(
            jnp.sum(jnp.square(leaf), axis=tuple(range(1 + len(batch_shape), leaf.ndim)))
            for leaf in jax.tree.leaves(tree)
        )

    numerator, denominator = squared_norm(through), squared_norm(errors)
    kept = denominator >= bound
    ratio = numerator / jnp.where(kept, denominator, jnp.ones_like(denominator))
    terms = jnp.where(kept, jnp.square(ratio - 1), jnp.zeros_like(ratio))
    count = jnp.sum(kept)
    return jnp.sum(terms) / jnp.maximum(count, 1).astype(terms.dtype)
