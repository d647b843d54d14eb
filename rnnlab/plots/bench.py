"""Plots of ``experiments/bench.py``: step time against T, and the ratio to torch."""

from __future__ import annotations

from rnnlab.plots import figure, save

__all__ = ["plot_timings"]

_COLORS = {"rnnlab": "C0", "rnnlab-generic": "C2", "torch": "C3", "flax": "C1"}


def plot_timings(rows, path) -> None:
    """Saves a PNG of the training and inference timings of the standard shape.

    Args:
      rows: ``summary["timing"]`` of the bench: dicts with ``cell``, ``mode``, ``T``,
        ``H`` and ``systems: {name: {"ms", "ratio_vs_torch", ...}}``.
      path: where to write the PNG.

    Top row: ms per step against T (log-log), one panel per cell, training solid,
    inference dashed with open markers.  Bottom row: rnnlab's time over torch's, per
    pass; the dotted line at 1 is the target.  Only the most common H is drawn.
    """
    hidden_sizes = [row["H"] for row in rows]
    hidden = max(set(hidden_sizes), key=hidden_sizes.count)
    rows = [row for row in rows if row["H"] == hidden]
    cells = list(dict.fromkeys(row["cell"] for row in rows))
    fig, axes = figure(2, len(cells), figsize=(4 * len(cells), 6), squeeze=False)
    for column, cell in enumerate(cells):
        top, bottom = axes[0, column], axes[1, column]
        for mode, style, face in (("train", "-", None), ("infer", "--", "none")):
            selected = sorted(
                (r for r in rows if r["cell"] == cell and r["mode"] == mode), key=lambda r: r["T"]
            )
            steps = [r["T"] for r in selected]
            for name, color in _COLORS.items():
                if selected and name in selected[0]["systems"]:
                    times = [r["systems"][name]["ms"] for r in selected]
                    label = f"{name} ({mode})"
                    top.plot(steps, times, style, marker="o", mfc=face, color=color, label=label)
            if selected:
                for index in range(
                    len(selected[0]["systems"]["rnnlab"]["ratio_vs_torch_per_pass"])
                ):
                    ratios = [
                        r["systems"]["rnnlab"]["ratio_vs_torch_per_pass"][index] for r in selected
                    ]
                    bottom.plot(
                        steps,
                        ratios,
                        style,
                        marker="o",
                        mfc=face,
                        color="C0",
                        alpha=0.7,
                        label=f"{mode}, pass {index + 1}",
                    )
        top.set(
            xscale="log",
            yscale="log",
            title=f"{cell}, H={hidden}",
            xlabel="T",
            ylabel="ms per step",
        )
        bottom.axhline(1.0, color="k", linestyle=":", linewidth=1)
        bottom.set(xscale="log", xlabel="T", ylabel="rnnlab / torch")
        if column == 0:
            top.legend(fontsize=7)
            bottom.legend(fontsize=7)
    save(fig, path)
