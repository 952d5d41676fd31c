"""Hyperband bucket points ("bands"), exactly as W&B computes them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class HyperbandRule:
    """The `early_terminate` block after W&B defaults are applied."""

    eta: float = 3.0
    strict: bool = True
    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None

    @property
    def bounded(self) -> bool:
        """With max_iter the bands are a fixed, finite list; with min_iter alone they never end."""
        return self.max_iter is not None

    def bands_from_max_iter(self) -> list[int]:
        assert self.max_iter is not None and self.s is not None
        # max_iter / eta^k for k = 1..s, truncated; values below 1 are dropped, duplicates merged.
        raw = {int(self.max_iter / self.eta**k) for k in range(1, self.s + 1)}
        return sorted(b for b in raw if b >= 1)

    def iter_bands(self) -> Iterator[int]:
        """Every band in increasing order (infinite when only min_iter is set)."""
        if self.bounded:
            yield from self.bands_from_max_iter()
            return
        assert self.min_iter is not None
        last = 0
        k = 0
        while True:
            band = int(self.min_iter * self.eta**k)
            k += 1
            if band > last:  # int() can repeat a value for eta close to 1
                last = band
                yield band

    def bands_up_to(self, limit: int) -> list[int]:
        """Bands no larger than `limit`."""
        out = []
        for band in self.iter_bands():
            if band > limit:
                break
            out.append(band)
        return out

    def explain(self) -> list[str]:
        """Where each band comes from, for `kubesweep plan`."""
        eta = _fmt(self.eta)
        if self.bounded:
            lines = []
            for k in range(1, (self.s or 0) + 1):
                exact = self.max_iter / self.eta**k
                kept = "kept" if int(exact) >= 1 else "dropped (below 1)"
                lines.append(f"max_iter {self.max_iter} / {eta}^{k} = {exact:.4g} -> {int(exact)} ({kept})")
            return lines
        return [f"min_iter {self.min_iter} * {eta}^k for k = 0, 1, 2, ... (no upper end)"]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
