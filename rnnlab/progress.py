"""A dependency-free progress line for long work (stderr, rate and ETA)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "label") as bar: bar.update(n, loss=0.1)``.

    Prints one refreshing line on a terminal and a line every ``every`` seconds
    otherwise (CI logs stay readable).
    """

    def __init__(self, total: int, label: str = "", *, unit: str = "it", every: float = 5.0):
        self.total, self.label, self.unit, self.every = total, label, unit, every
        self.done = 0
        self.start = time.perf_counter()
        self._last_print = -float("inf")
        self._printed = -1  # the count shown by the last line, to avoid repeating it
        self._tty = sys.stderr.isatty()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._tty or self._printed != self.done:
            self._print(force=True, end="\n")

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields = fields
        self._print()

    def _print(self, force: bool = False, end: str = "") -> None:
        now = time.perf_counter()
        if not force and now - self._last_print < (0.2 if self._tty else self.every):
            return
        self._last_print = now
        self._printed = self.done
        elapsed = now - self.start
        remaining = (self.total - self.done) / self.rate if self.rate > 0 else float("nan")
        fields = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in getattr(self, "fields", {}).items()
        )
        line = (
            f"{self.label} {self.done}/{self.total} {self.unit} "
            f"[{elapsed:.0f}s, {self.rate:.3g} {self.unit}/s, eta {remaining:.0f}s] {fields}"
        )
        if self._tty:
            sys.stderr.write("\r" + line.ljust(100) + end)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
