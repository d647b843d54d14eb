"""The cliff: the error surface of a one-unit RNN, and SGD with and without clipping on it.

Pascanu, Mikolov & Bengio 2013 (Section 3.2, Figure 6) explain exploding gradients with
a one-unit network without input, ``x_t = w sigma(x_{t-1}) + b`` with ``x_0 = 0.5``,
trained so that ``sigma(x_50)`` reaches 0.7: ``E = (sigma(x_50) - 0.7)^2`` over the two
parameters ``(w, b)``.  Their Figure 6 sketches the surface's high-curvature wall and the
paths of gradient descent with (dashed) and without (solid) rescaling of the gradient's
norm.  This draws the surface computed on a grid, and real SGD paths over it.

The model is :func:`rnnlab.rnn` with one unit: ``h_t = sigma(w h_{t-1} + b)`` is the same
recurrence for ``h_t = sigma(x_t)``, with ``h_0 = sigma(x_0)`` and ``E = (h_50 - 0.7)^2``.
Where the map is bistable, the wall is the set of ``(w, b)`` for which ``x_0`` lies on
the boundary between the two basins, i.e. is the unstable fixed point:
``x_0 = w sigma(x_0) + b`` with ``|w sigma'(x_0)| > 1``, on the line
``b = x_0 - w sigma(x_0)``.  Just above it ``h`` lingers
near that fixed point before leaving, so the valley of low error lies along the foot of
the wall, and the gradient on the wall's face is hundreds of times larger than elsewhere.

Setup choices (the paper gives the model, ``x_0``, T and the target; not the plotted
window, the starting points or the step size): sigma is the logistic sigmoid, as in the
paper's examples of this model (a second panel uses tanh, the nonlinearity this study
was asked about); SGD with a constant learning rate; clipping rescales the gradient to
norm 1 when it is larger (their Algorithm 1).  Starting points are given as offsets
above the wall and were chosen, with the learning rate, so that the plain SGD path
meets the wall's face within the budget; both paths start from the same point.

Artifacts in ``--out``: ``cliff.png``, ``paths.csv`` (every step of every path),
``config.json`` and ``summary.json`` (per path: the largest gradient norm met, the
largest step, where it ends and the error there).

Run: ``PYTHONPATH=. python experiments/cliff.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnlab
from rnnlab import cli, io, plots, runtime
from rnnlab.plots import gradients as gradient_plots
from rnnlab.progress import Progress


class Surface(NamedTuple):
    """One panel: a nonlinearity, the plotted window and the SGD settings over it."""

    activation: str
    w_range: tuple[float, float]
    b_range: tuple[float, float]
    starts: tuple[tuple[float, float], ...]  # (w, height above the wall)
    learning_rate: float


SURFACES = (
    Surface("sigmoid", (2.0, 10.0), (-6.0, 0.0), ((5.5, 0.3), (6.0, 1.0)), 0.5),
    Surface("tanh", (-1.0, 5.0), (-3.0, 2.0), ((2.0, 1.5),), 2.0),
)


def parse_args(argv=None):
    parser = cli.Parser(description=__doc__.split("\n")[0], renamed={"--steps": "--length"})
    parser.add_argument("--out", type=Path, default=Path("results/cliff"))
    parser.add_argument("--length", type=int, default=50, help="time steps T of the RNN")
    parser.add_argument("--x0", type=float, default=0.5, help="initial state x_0")
    parser.add_argument("--target", type=float, default=0.7)
    parser.add_argument("--grid", type=int, default=400, help="grid points per axis")
    parser.add_argument("--sgd-steps", type=int, default=100)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.grid, args.sgd_steps = 80, 60
    parser.check_at_least(args, 1, "length", "grid", "sgd_steps")
    if not args.clip_norm > 0:
        parser.error("--clip-norm must be > 0")
    return args


def error_function(activation: str, args):
    """``E(theta)`` with ``theta = [w, b]`` (one rnnlab RNN unit, no input, float64),
    ``sigma(x_0)`` and ``sigma'(x_0)``."""
    cell = rnnlab.rnn(1, activation=activation, param_dtype=jnp.float64)
    # h_0 = sigma(x_0), computed by the cell itself: one step from h = 0 with bias x_0.
    first = {"weight_ih": jnp.zeros((1, 1)), "weight_hh": jnp.zeros((1, 1)),
             "bias_ih": jnp.full((1,), args.x0), "bias_hh": jnp.zeros((1,))}  # fmt: skip
    start, slope = jax.jvp(
        lambda bias: cell.step({**first, "bias_ih": bias}, cell.initial_carry(), jnp.zeros((1,)))[
            0
        ],
        (first["bias_ih"],),
        (jnp.ones((1,)),),
    )  # slope = sigma'(x_0)
    inputs = jnp.zeros((args.length, 1))

    def error(theta):
        params = {
            "weight_ih": jnp.zeros((1, 1)),
            "weight_hh": theta[:1].reshape(1, 1),
            "bias_ih": jnp.zeros((1,)),
            "bias_hh": theta[1:],
        }
        ys, _ = rnnlab.unroll(cell, params, inputs, carry=start)
        return jnp.square(ys[-1, 0] - args.target)

    return error, float(start[0]), float(slope[0])


def wall(w, x0: float, h0: float):
    """The basin boundary ``b = x_0 - w sigma(x_0)`` (``h0 = sigma(x_0)``)."""
    return x0 - np.asarray(w) * h0


def sgd_path(error, start, learning_rate: float, steps: int, clip_norm: float | None):
    """SGD on ``error`` from ``start``: ``[steps + 1, 2]`` points and ``[steps]`` gradient
    norms; with ``clip_norm``, gradients are rescaled to that norm when larger."""
    transforms = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    optimizer = optax.chain(*transforms, optax.sgd(learning_rate))

    def step(carry, _):
        theta, state = carry
        grad = jax.grad(error)(theta)
        updates, state = optimizer.update(grad, state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), (theta, jnp.linalg.norm(grad))

    (_, _), (points, norms) = jax.lax.scan(step, (start, optimizer.init(start)), None, length=steps)
    return jnp.concatenate([start[None], points]), norms


def describe_path(points, norms, error, surface: Surface, clip_norm) -> dict:
    """What a path met: its largest gradient and step, where it ends, whether it left."""
    jumps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    (w0, w1), (b0, b1) = surface.w_range, surface.b_range
    inside = (
        (points[:, 0] >= w0) & (points[:, 0] <= w1) & (points[:, 1] >= b0) & (points[:, 1] <= b1)
    )
    return {
        "start": points[0].tolist(),
        "end": points[-1].tolist(),
        "final_error": float(error(jnp.asarray(points[-1]))),
        "max_gradient_norm": float(norms.max()),
        "step_of_max_gradient": int(norms.argmax()),
        "largest_step": float(jumps.max()),
        "steps_above_clip_norm": int(np.sum(norms > clip_norm)),
        "left_the_window": bool(not inside.all()),
    }


def draw_surface(surface: Surface, args, axis, rows: list) -> dict:
    """Computes one surface and its SGD paths, draws them on ``axis``, appends the paths'
    steps to ``rows`` and returns the surface's summary."""
    error, h0, slope = error_function(surface.activation, args)
    ws = np.linspace(*surface.w_range, args.grid)
    bs = np.linspace(*surface.b_range, args.grid)
    grid = jnp.asarray(np.stack(np.meshgrid(ws, bs), axis=-1))  # [b, w, 2]
    value_and_norm = jax.vmap(jax.vmap(lambda t: (error(t), jnp.linalg.norm(jax.grad(error)(t)))))
    values, gradient_norms = (np.asarray(a) for a in jax.jit(value_and_norm)(grid))
    steepest = np.unravel_index(np.argmax(gradient_norms), gradient_norms.shape)
    # Column by column, well inside the bistable range: where the gradient is largest.
    columns = np.abs(ws * slope) >= 1.5
    steepest_b = bs[np.argmax(gradient_norms, axis=0)][columns]
    deviation = np.abs(steepest_b - wall(ws[columns], args.x0, h0)) / (bs[1] - bs[0])
    paths, described = [], []
    variants = (("SGD", None), (f"SGD, clipped at {args.clip_norm:g}", args.clip_norm))
    for w, height in surface.starts:
        start = jnp.array([w, wall(w, args.x0, h0) + height])
        for label, clip_norm in variants:
            points, norms = jax.jit(sgd_path, static_argnums=(0, 2, 3, 4))(
                error, start, surface.learning_rate, args.sgd_steps, clip_norm
            )
            points, norms = np.asarray(points), np.asarray(norms)
            described.append(
                {"variant": label, **describe_path(points, norms, error, surface, args.clip_norm)}
            )
            info = described[-1]
            legend = f"{label} from w={w:g}: ends at E={info['final_error']:.1e}"
            if info["left_the_window"]:
                legend += f", thrown to ({info['end'][0]:.0f}, {info['end'][1]:.0f})"
            paths.append(gradient_plots.Path(legend, points, dashed=clip_norm is not None))
            for step, (point, norm) in enumerate(zip(points[1:], norms, strict=True)):
                rows.append({"activation": surface.activation, "start_w": w, "variant": label,
                             "step": step + 1, "w": point[0], "b": point[1],
                             "gradient_norm": norm})  # fmt: skip
    gradient_plots.cliff_figure(
        ws, bs, values, paths, labels=("w", "b"), axis=axis,
        title=f"{surface.activation}: E = ({surface.activation}(x_{args.length}) - "
        f"{args.target:g})², x_0 = {args.x0:g}, lr {surface.learning_rate:g}",
    )  # fmt: skip
    # The wall: x_0 is an unstable fixed point, |w sigma'(x_0)| > 1, on the line.
    on_wall = np.where(np.abs(ws * slope) > 1, wall(ws, args.x0, h0), np.nan)
    axis.plot(ws, on_wall, ":", color="white", lw=0.9)
    return {
        "error_range": [float(values.min()), float(values.max())],
        "grid_max_gradient_norm": float(gradient_norms.max()),
        "grid_median_gradient_norm": float(np.median(gradient_norms)),
        "steepest_point": [float(ws[steepest[1]]), float(bs[steepest[0]])],
        "wall_b_at_steepest_w": float(wall(ws[steepest[1]], args.x0, h0)),
        "wall_columns": int(columns.sum()),
        "wall_largest_deviation_in_grid_steps": float(deviation.max()) if columns.any() else None,
        "paths": described,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start_time = time.perf_counter()
    out = args.out
    io.write_config(
        out,
        "cliff",
        vars(args),
        details={
            "model": "x_t = w sigma(x_{t-1}) + b, no input; E = (sigma(x_T) - target)^2 "
            "(rnnlab.rnn(1, activation=activation): h_t = sigma(w h_{t-1} + b), h_0 = sigma(x_0))",
            "surfaces": [s._asdict() for s in SURFACES],
            "optimizer": "SGD, constant learning rate; clipping: optax.clip_by_global_norm",
            "dtype": "float64",
        },
    )  # fmt: skip
    summary, rows = {"surfaces": {}}, []
    fig, axes = plots.figure(1, len(SURFACES), figsize=(6.5 * len(SURFACES), 5.2), squeeze=False)
    with jax.enable_x64(True), Progress(len(SURFACES), "cliff", unit="surfaces") as bar:
        for axis, surface in zip(axes[0], SURFACES, strict=True):
            summary["surfaces"][surface.activation] = draw_surface(surface, args, axis, rows)
            bar.update(1, activation=surface.activation)
    fig.suptitle(
        "The cliff of Pascanu et al. 2013 (Fig. 6): error surface over (w, b) and SGD paths; "
        "dotted white: the wall, b = x_0 - w σ(x_0) where |w σ'(x_0)| > 1",
        fontsize=10,
    )
    plots.save(fig, out / "cliff.png")
    io.write_csv(out / "paths.csv", rows)
    summary["wall_time_s"] = time.perf_counter() - start_time
    io.write_json(out / "summary.json", summary)
    print(f"wrote {out}/: config.json summary.json paths.csv cliff.png")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
