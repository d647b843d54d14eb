r"""Dynamics diagnostics: Lyapunov spectra of any cell, and the loss Hessian's top eigenvalues.

A gradient through ``T`` steps is a product of step Jacobians
``J_t = d carry_t / d carry_{t-1}``.  The Lyapunov exponents
``lambda_1 >= lambda_2 >= ...`` are the asymptotic growth rates of such products:
``||J_T ... J_1 v|| ~ exp(lambda_1 T)`` for almost every ``v``, and the volume of a
``k``-dimensional parallelepiped grows like ``exp((lambda_1 + ... + lambda_k) T)``.  So
the exponents of the forward dynamics predict, before any training, whether
backpropagated errors vanish (``lambda_1 < 0``) or explode (``lambda_1 > 0``)
(Engelken, Wolf & Abbott 2020).

- :func:`lyapunov_spectrum`: the ``k`` largest exponents by the QR method, their
  finite-time (local) values over time, and the participation ratio of the first
  covariant Lyapunov vector.
- :func:`max_lyapunov`: the largest exponent alone, with one renormalized tangent vector.
- :func:`flossing_loss`: ``sum_i lambda_i^2`` over the top ``k``, a differentiable
  regularizer that pushes the exponents toward 0 (gradient flossing, Engelken 2023).
- :func:`hessian_top_eigenvalues`: the top eigenvalues of a loss Hessian by Lanczos over
  Hessian-vector products, on any params pytree (as Zucchet & Orvieto 2024 track it).

Every function works for any :class:`rnnlab.cells.Cell`.  The state is the whole carry
flattened to ``D`` real numbers (complex leaves count twice: real and imaginary parts),
so ``D = H`` for the RNN and GRU and ``2H`` for the LSTM's ``(h, c)``.  Tangent vectors
are pushed forward with ``jax.jvp`` of ``cell.step`` inside a plain ``lax.scan`` (not
:func:`rnnlab.unroll`, whose fused ``custom_vjp`` path forward-mode autodiff cannot
enter).  Everything is jittable; ``k`` and the interval lengths are static.

References:
  R. Engelken, F. Wolf, L. F. Abbott, "Lyapunov spectra of chaotic recurrent neural
  networks", arXiv:2006.02427, 2020.
  R. Engelken, "Gradient flossing: improving gradient descent through dynamic control
  of Jacobians", NeurIPS 2023.
  N. Zucchet, A. Orvieto, "Recurrent neural networks: vanishing and exploding gradients
  are not the end of the story", NeurIPS 2024.
  G. Benettin, L. Galgani, A. Giorgilli, J.-M. Strelcyn, "Lyapunov characteristic
  exponents for smooth dynamical systems", Meccanica 15, 1980 (the QR method).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from rnnlab import _checks
from rnnlab.cells._cell import Carry, Cell, Params

__all__ = [
    "HessianSpectrum",
    "LyapunovSpectrum",
    "MaxLyapunov",
    "flossing_loss",
    "hessian_top_eigenvalues",
    "lyapunov_spectrum",
    "max_lyapunov",
]


class LyapunovSpectrum(NamedTuple):
    """The result of :func:`lyapunov_spectrum` (``...`` are the batch axes of ``xs``).

    Attributes:
      exponents: ``[..., k]``, the ``k`` largest exponents in nats per step, in the
        order of the QR factorization (descending once converged).  Each is the mean of
        ``log|R_ii| / m`` over the blocks after the transient.
      local_exponents: ``[..., n_blocks, k]``, the finite-time exponents
        ``log|R_ii| / m`` of every block of ``m = reorthonormalize_every`` steps,
        transient blocks included; block ``b`` ends after step ``(b + 1) m``.
      participation_ratio: ``[...]``, ``1 / sum_i v_i^4`` of the unit first covariant
        Lyapunov vector ``v`` (see :func:`lyapunov_spectrum`), averaged over the
        re-orthonormalization times after the transient.  It lies in ``[1, D]``: 1 when
        one coordinate carries the most unstable direction, ``D`` when all share it.
    """

    exponents: jax.Array
    local_exponents: jax.Array
    participation_ratio: jax.Array


class MaxLyapunov(NamedTuple):
    """The result of :func:`max_lyapunov`: :class:`LyapunovSpectrum` with ``k = 1`` squeezed.

    Attributes:
      exponent: ``[...]``, the largest exponent in nats per step.
      local_exponents: ``[..., n_blocks]``, its finite-time values per block.
      participation_ratio: ``[...]``, of the first covariant Lyapunov vector.
    """

    exponent: jax.Array
    local_exponents: jax.Array
    participation_ratio: jax.Array


# --------------------------------------------------------------------------------------
# Validation (one place for every argument check of this module)
# --------------------------------------------------------------------------------------


def _check_at_most(value: int, limit: int, argument: str, what: str) -> None:
    if value > limit:
        raise ValueError(f"{argument}={value} exceeds {what} ({limit}); use {argument} <= {limit}")


# --------------------------------------------------------------------------------------
# The carry as one real vector
# --------------------------------------------------------------------------------------


class _Flat(NamedTuple):
    """``flatten(carry) -> [D]`` real and its inverse, for an unbatched carry."""

    size: int
    dtype: Any
    flatten: Callable[[Carry], jax.Array]
    unflatten: Callable[[jax.Array], Carry]


def _flat_state(template: Carry) -> _Flat:
    """The real coordinates of a carry: each leaf raveled; complex leaves as (real, imag).

    A complex leaf is split so that the state space is a real vector space: the
    derivative of a step that is not holomorphic (``Re``, ``|.|``) is only R-linear.
    """
    leaves, treedef = jax.tree.flatten(template)
    shapes = [tuple(leaf.shape) for leaf in leaves]
    dtypes = [jnp.dtype(leaf.dtype) for leaf in leaves]
    is_complex = [jnp.issubdtype(dtype, jnp.complexfloating) for dtype in dtypes]
    sizes = [math.prod(shape) for shape in shapes]
    real_dtype = jnp.result_type(*[jnp.finfo(dtype).dtype for dtype in dtypes])

    def flatten(carry):
        parts = []
        for leaf, complex_leaf in zip(treedef.flatten_up_to(carry), is_complex, strict=True):
            leaf = jnp.ravel(leaf)
            parts += [jnp.real(leaf), jnp.imag(leaf)] if complex_leaf else [leaf]
        return jnp.concatenate([part.astype(real_dtype) for part in parts])

    def unflatten(flat):
        leaves, start = [], 0
        for shape, dtype, size, complex_leaf in zip(shapes, dtypes, sizes, is_complex, strict=True):
            if complex_leaf:
                real, imag = flat[start : start + size], flat[start + size : start + 2 * size]
                leaf = jax.lax.complex(real, imag)
                start += 2 * size
            else:
                leaf = flat[start : start + size]
                start += size
            leaves.append(leaf.reshape(shape).astype(dtype))
        return jax.tree.unflatten(treedef, leaves)

    size = sum(size * (2 if c else 1) for size, c in zip(sizes, is_complex, strict=True))
    return _Flat(size, real_dtype, flatten, unflatten)


# --------------------------------------------------------------------------------------
# Tangent dynamics along one trajectory
# --------------------------------------------------------------------------------------


def _qr_renormalize(tangents: jax.Array):
    """``Q, R = qr(tangents)``; returns ``(Q with diag(R) >= 0, log|diag R|)``."""
    q, r = jnp.linalg.qr(tangents)
    diagonal = jnp.diagonal(r)
    # A sign flip keeps each column continuous in time (the same direction, not -v).
    sign = jnp.where(diagonal < 0, -1.0, 1.0).astype(q.dtype)
    return q * sign, jnp.log(jnp.abs(diagonal))


def _norm_renormalize(tangents: jax.Array):
    """One column ``[D, 1]``: divide by its norm; returns ``(unit column, [log norm])``."""
    norm = jnp.linalg.norm(tangents[:, 0])
    return tangents / norm, jnp.log(norm)[None]


def _one_trajectory(cell, params, xs, carry, tangents, block: int, renormalize):
    """Evolves ``carry`` along ``xs [n * block, F]`` and ``tangents [D, k]`` with the Jacobians.

    Returns ``(log_growth [n, k], participation [n])``: after each block of ``block``
    steps, ``renormalize`` gives the log growth of each tangent direction, and
    ``participation`` is ``1 / sum v^4`` of the first (unit) column.
    """
    flat = _flat_state(carry)
    if cell.prepare is not None:
        params = cell.prepare(params)
    inputs, step_fn = xs, cell.step
    inputs = inputs.reshape((-1, block) + inputs.shape[1:])

    def advance(state, x):
        h, q = state

        def step(s):
            return flat.flatten(step_fn(params, flat.unflatten(s), x)[0])

        # The primal is unbatched, so vmap evaluates the step once and pushes k tangents.
        jvp = jax.vmap(lambda v: jax.jvp(step, (h,), (v,)), in_axes=1, out_axes=(None, 1))
        return jvp(q), None

    def one_block(state, block_inputs):
        (h, q), _ = jax.lax.scan(advance, state, block_inputs)
        q, log_growth = renormalize(q)
        first = q[:, 0]
        return (h, q), (log_growth, 1.0 / jnp.sum(jnp.square(jnp.square(first))))

    _, (log_growth, participation) = jax.lax.scan(
        one_block, (flat.flatten(carry), tangents.astype(flat.dtype)), inputs
    )
    return log_growth, participation


class _Prepared(NamedTuple):
    """Checked inputs: ``xs [..., T, F]``, the carry, the flat state, the block length
    ``m``, the number of whole blocks ``n = T // m`` and the ``skip`` transient blocks."""

    xs: jax.Array
    carry: Carry
    flat: _Flat
    m: int
    blocks: int
    skip: int


def _prepare(
    cell: Cell,
    params: Params,
    xs,
    carry,
    k,
    interval,
    transient,
    interval_name: str = "reorthonormalize_every",
):
    """Validates the arguments of the Lyapunov functions; see :class:`_Prepared`."""
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(f"xs must have shape [..., T, F], got shape {xs.shape}")
    expected = cell.input_size(params)
    if xs.shape[-1] != expected:
        raise ValueError(
            f"xs has feature size {xs.shape[-1]} (last axis) but the params of this "
            f"{cell.name} cell expect input_size={expected}"
        )
    batch_shape, steps = xs.shape[:-2], xs.shape[-2]
    if carry is None:
        carry = cell.initial_carry(batch_shape)
    batch_ndim = len(batch_shape)
    for leaf in jax.tree.leaves(carry):
        if tuple(leaf.shape[:batch_ndim]) != batch_shape:
            raise ValueError(
                f"carry leaves must start with the batch shape of xs, {batch_shape}; got a "
                f"leaf of shape {leaf.shape}.  Build it with cell.initial_carry({batch_shape})"
            )
    template = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape[batch_ndim:], leaf.dtype), carry
    )
    flat = _flat_state(template)
    m = _checks.integer(interval_name, interval, minimum=1)
    k = _checks.integer("k", k, minimum=1)
    _check_at_most(k, flat.size, "k", f"the state size D of the flattened {cell.name} carry")
    if transient is None:
        transient = steps // 4
    transient = _checks.integer("transient", transient, minimum=0)
    blocks, skip = steps // m, -(-transient // m)
    if blocks - skip < 1:
        raise ValueError(
            f"transient={transient} leaves nothing to average: xs has T={steps} steps, i.e. "
            f"{blocks} blocks of {interval_name}={m} steps, and the transient takes "
            f"{skip}.  Use a longer xs (T >= {(skip + 1) * m}) or a shorter transient"
        )
    return _Prepared(xs, carry, flat, m, blocks, skip)


def _tangent_study(cell, params, prepared: _Prepared, k: int, key, renormalize):
    """Batches :func:`_one_trajectory` over the leading axes of ``xs`` and ``carry``.

    Returns ``(exponents [..., k], local [..., n, k], participation_ratio [...])``.
    """
    xs, carry, flat, m, blocks, skip = prepared
    batch_shape = xs.shape[:-2]
    key = jax.random.key(0) if key is None else key
    # A random start: basis vectors would sit in invariant subspaces of diagonal systems.
    start, _ = _qr_renormalize(jax.random.normal(key, (flat.size, k), flat.dtype))

    def run(x, c):
        return _one_trajectory(cell, params, x, c, start, m, renormalize)

    count = math.prod(batch_shape)
    xs = xs[..., : blocks * m, :].reshape((count, blocks * m, xs.shape[-1]))
    carry = jax.tree.map(
        lambda leaf: leaf.reshape((count,) + leaf.shape[len(batch_shape) :]), carry
    )
    log_growth, participation = jax.vmap(run)(xs, carry)  # [B, n, k], [B, n]
    local = log_growth / m
    exponents = jnp.mean(local[:, skip:], axis=1)
    ratio = jnp.mean(participation[:, skip:], axis=1)
    return (
        exponents.reshape(batch_shape + (k,)),
        local.reshape(batch_shape + (blocks, k)),
        ratio.reshape(batch_shape),
    )


# --------------------------------------------------------------------------------------
# Lyapunov exponents
# --------------------------------------------------------------------------------------


def lyapunov_spectrum(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    k: int,
    *,
    carry: Carry | None = None,
    reorthonormalize_every: int = 1,
    transient: int | None = None,
    key: jax.Array | None = None,
) -> LyapunovSpectrum:
    r"""The ``k`` largest Lyapunov exponents of ``cell`` along the trajectory driven by ``xs``.

    The QR method (Benettin et al. 1980; protocol of Engelken, Wolf & Abbott 2020)::

        Q_0 = random orthonormal [D, k]
        every step t:        h_t = step(h_{t-1}, x_t),   Q <- J_t Q   (k jvps)
        every m steps (b):   Q, R = qr(Q),   local_b = log|diag R| / m
        exponents = mean of local_b over the blocks after the transient

    with ``J_t = d h_t / d h_{t-1}`` the Jacobian of ``cell.step`` on the flattened carry
    (``D`` real numbers; see the module doc; ``cell.prepare``, when the cell declares it,
    runs once before the loop) and ``m = reorthonormalize_every``.  The
    trajectory is cut into ``n = T // m`` blocks (a remainder of ``T mod m`` steps is not
    used); the first ``ceil(transient / m)`` blocks let the state and the tangent basis
    converge and are left out of the average.

    **Participation ratio.**  After each QR the first column ``v = Q[:, 0]`` is the first
    backward (Gram-Schmidt) Lyapunov vector.  The first *covariant* Lyapunov vector is
    the same vector (the covariant vectors are the backward ones times an upper
    triangular matrix, whose first column is ``e_1``; Ginelli et al. 2007), so no
    backward pass is needed.  We report ``PR = 1 / sum_i v_i^4`` (``||v|| = 1``, over
    the ``D`` flattened coordinates), averaged over the QR times after the transient.

    Args:
      cell: any :class:`rnnlab.cells.Cell`.
      params: its params (no batch axes; ``jax.vmap`` over params for a sweep).
      xs: ``[..., T, F]`` inputs; each leading index is one trajectory.
      k: how many exponents (static), ``1 <= k <= D``.
      carry: the initial carry, leaves ``[..., *]``; default ``cell.initial_carry``.
      reorthonormalize_every: ``m``, steps between QR factorizations (static).  Larger
        is cheaper; in float32 keep ``(lambda_1 - lambda_k) m`` below about 10, or the
        columns collapse onto the first direction between QRs.
      transient: steps left out of the average (static); default ``T // 4``.
      key: PRNG key of the random start basis; default ``jax.random.key(0)``.  The same basis
        starts every trajectory of the batch.

    Returns:
      A :class:`LyapunovSpectrum` (``exponents [..., k]``, ``local_exponents
      [..., n, k]``, ``participation_ratio [...]``), in nats per step.

    Raises:
      ValueError: naming ``k`` if ``k > D``, ``reorthonormalize_every`` if it is not a
        positive int, ``transient`` if no block is left after it, and ``xs`` / ``carry``
        for wrong shapes.

    Example::

      cell = rnnlab.rnn(64, activation="tanh", recurrent_init="normal", recurrent_scale=2.0)
      params = cell.init(jax.random.key(0), 1)
      xs = jnp.zeros((8, 1000, 1))                       # 8 autonomous trajectories
      h0 = jax.random.normal(jax.random.key(1), (8, 64))
      spectrum = jax.jit(lambda p, x, h: lyapunov_spectrum(cell, p, x, 10, carry=h))(
          params, xs, h0)
      spectrum.exponents[:, 0]                           # > 0: chaotic at g = 2
    """
    prepared = _prepare(cell, params, xs, carry, k, reorthonormalize_every, transient)
    exponents, local, ratio = _tangent_study(cell, params, prepared, k, key, _qr_renormalize)
    return LyapunovSpectrum(exponents, local, ratio)


def max_lyapunov(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    carry: Carry | None = None,
    renormalize_every: int = 1,
    transient: int | None = None,
    key: jax.Array | None = None,
) -> MaxLyapunov:
    r"""The largest Lyapunov exponent: one tangent vector, renormalized (Benettin et al. 1980).

    ``v <- J_t v`` every step and, every ``m = renormalize_every`` steps,
    ``local_b = log ||v|| / m`` and ``v <- v / ||v||``; the exponent is the mean of
    ``local_b`` after the transient.  This is :func:`lyapunov_spectrum` with ``k = 1``
    without the QR: one jvp per step.  The unit vector ``v`` is the first covariant
    Lyapunov vector, whose participation ratio is reported as there.

    Args:
      cell, params, xs, carry, transient, key: as in :func:`lyapunov_spectrum`.
      renormalize_every: ``m``, steps between renormalizations (static); ``T // m``
        whole blocks are used.

    Returns:
      A :class:`MaxLyapunov` (``exponent [...]``, ``local_exponents [..., n]``,
      ``participation_ratio [...]``), in nats per step.

    Raises:
      ValueError: naming ``renormalize_every`` if it is not a positive int, and
        ``transient`` if no block is left after it.
    """
    prepared = _prepare(
        cell, params, xs, carry, 1, renormalize_every, transient, "renormalize_every"
    )
    exponents, local, ratio = _tangent_study(cell, params, prepared, 1, key, _norm_renormalize)
    return MaxLyapunov(exponents[..., 0], local[..., 0], ratio)


def flossing_loss(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    k: int,
    **options,
) -> jax.Array:
    r"""Gradient flossing (Engelken 2023): ``mean over trajectories of sum_{i<=k} lambda_i^2``.

    Minimizing it with respect to ``params`` pushes the ``k`` largest Lyapunov exponents
    toward 0, so that products of ``k`` directions of Jacobians neither vanish nor
    explode.  It is differentiable: the exponents come from ``jax.jvp`` and
    ``jnp.linalg.qr``, and reverse mode goes through both.  Add ``strength *
    flossing_loss(...)`` to a training loss (Engelken flosses before and during training).

    Args:
      cell, params, xs, k: as in :func:`lyapunov_spectrum`.
      **options: ``carry``, ``reorthonormalize_every``, ``transient``, ``key`` of
        :func:`lyapunov_spectrum`.

    Returns:
      A scalar.
    """
    exponents = lyapunov_spectrum(cell, params, xs, k, **options).exponents
    return jnp.mean(jnp.sum(jnp.square(exponents), axis=-1))


# --------------------------------------------------------------------------------------
# Loss Hessian
# --------------------------------------------------------------------------------------


class HessianSpectrum(NamedTuple):
    """The result of :func:`hessian_top_eigenvalues`.

    Attributes:
      eigenvalues: ``[k]``, the algebraically largest Ritz values, descending.
      eigenvectors: a pytree shaped like ``params`` whose leaves have a leading ``[k]``
        axis: the unit Ritz vectors (over all leaves together).
      residual_norms: ``[k]``, ``||H u - theta u||`` of each Ritz pair ``(theta, u)``,
        from the Lanczos recurrence (``|beta_m s_m|``): small means converged.
    """

    eigenvalues: jax.Array
    eigenvectors: Any
    residual_norms: jax.Array


def hessian_top_eigenvalues(
    loss_fn: Callable[[Params], jax.Array],
    params: Params,
    k: int = 1,
    *,
    iterations: int = 32,
    key: jax.Array | None = None,
) -> HessianSpectrum:
    r"""Top eigenvalues of the Hessian of ``loss_fn`` at ``params``, by Lanczos.

    Lanczos with full re-orthogonalization over Hessian-vector products: with
    ``v_1`` a random unit vector, ``m = iterations`` steps build an orthonormal basis
    ``V = [v_1..v_m]`` of the Krylov space and the tridiagonal ``T = V^T H V``
    (``alpha_j = v_j . H v_j``, ``beta_j = ||w_j||``); the eigenvalues of ``T`` (Ritz
    values) converge to the extreme eigenvalues of ``H`` first.  If the space becomes
    invariant early (``beta_j ~ 0``), Lanczos restarts with a random vector orthogonal
    to ``V``.  With ``m = P`` (the number of parameters) the result is exact.  Zucchet &
    Orvieto 2024 track the top eigenvalue (by power iteration) to show that the loss
    sharpens as the memory of the network approaches 1.

    Hessian-vector products are forward-over-reverse,
    ``jax.jvp(jax.grad(loss_fn), (params,), (v,))``: one gradient's cost, a few times
    over.  This also goes through :func:`rnnlab.unroll`'s fused ``custom_vjp`` path: the
    jvp differentiates the backward pass that ``grad`` builds, never the custom rule.

    Args:
      loss_fn: ``loss_fn(params) -> scalar`` (close over the data).
      params: any pytree of float arrays; it is raveled to ``P`` numbers.
      k: how many eigenvalues (static), ``1 <= k <= P``.
      iterations: Lanczos steps ``m`` (static), ``k <= m``; clipped to ``P``.
      key: PRNG key of the start vector; default ``jax.random.key(0)``.

    Returns:
      A :class:`HessianSpectrum`: ``eigenvalues [k]`` descending, the Ritz vectors and
      their residual norms.

    Raises:
      ValueError: naming ``k`` or ``iterations``.
    """
    flat_params, unravel = jax.flatten_util.ravel_pytree(params)
    size, dtype = flat_params.shape[0], flat_params.dtype
    k = _checks.integer("k", k, minimum=1)
    _check_at_most(k, size, "k", "the number of parameters P")
    iterations = min(_checks.integer("iterations", iterations, minimum=1), size)
    if iterations < k:
        raise ValueError(f"iterations={iterations} must be >= k={k} (Ritz values from m steps)")
    gradient = jax.grad(loss_fn)

    def hvp(v):
        tangent = jax.jvp(gradient, (params,), (unravel(v),))[1]
        return jax.flatten_util.ravel_pytree(tangent)[0]

    def orthogonalize(w, basis):
        # Twice is enough (Giraud et al. 2005): one pass leaves O(eps * cond) overlap.
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        return w

    key = jax.random.key(0) if key is None else key
    # Row 0 starts Lanczos; row j + 1 restarts it if step j finds an invariant subspace.
    randoms = jax.random.normal(key, (iterations + 1, size), dtype)
    basis = jnp.zeros((iterations + 1, size), dtype)
    basis = basis.at[0].set(randoms[0] / jnp.linalg.norm(randoms[0]))
    tiny = 100 * jnp.finfo(dtype).eps

    def lanczos_step(j, state):
        basis, alphas, betas = state
        w = hvp(basis[j])
        alpha = jnp.vdot(basis[j], w)
        scale = jnp.maximum(jnp.linalg.norm(w), jnp.finfo(dtype).tiny)
        w = orthogonalize(w, basis)
        beta = jnp.linalg.norm(w)
        fresh = orthogonalize(randoms[j + 1], basis)
        invariant = beta <= tiny * scale
        following = jnp.where(invariant, fresh / jnp.linalg.norm(fresh), w / beta)
        return (
            basis.at[j + 1].set(following),
            alphas.at[j].set(alpha),
            betas.at[j].set(jnp.where(invariant, 0.0, beta)),
        )

    zeros = jnp.zeros(iterations, dtype)
    basis, alphas, betas = jax.lax.fori_loop(0, iterations, lanczos_step, (basis, zeros, zeros))
    off = betas[:-1]
    tridiagonal = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    values, vectors = jnp.linalg.eigh(tridiagonal)  # ascending
    top = jnp.arange(iterations - 1, iterations - 1 - k, -1)
    ritz = basis[:iterations].T @ vectors[:, top]  # [P, k]
    residuals = jnp.abs(betas[-1] * vectors[-1, top])
    return HessianSpectrum(values[top], jax.vmap(unravel, in_axes=1)(ritz), residuals)
