"""Synthetic embeddings shaped like real ones, for benchmarks and tests of ANN indexes at sizes we cannot embed.

Uniform random unit vectors make every ANN index look broken (all points are nearly equidistant, so the 10
"nearest" are noise). Real sentence embeddings are nothing like that: they share a mean direction, their variance
decays as a power law over principal directions, and they cluster by topic. `SpectrumModel` holds those three
properties, fitted to all-MiniLM-L6-v2 embeddings of SciFact (`bench/scale.py --fit-spectrum` refits them and
writes bench/results/scale_spectrum.json); `generate` draws from a Gaussian mixture with that spectrum,
deterministically per block of rows so any row range can be produced in bounded memory, in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

QUERY_STREAM = 1 << 40  # row offset of the query stream: far past any corpus, so queries are held-out draws
BLOCK = 8192  # rows per deterministic block


@dataclass(frozen=True, slots=True)
class SpectrumModel:
    """A Gaussian mixture with a power-law covariance spectrum: eigenvalue i ∝ (i + 1) ** -alpha."""

    dimension: int = 384
    alpha: float = 0.90  # power-law exponent of the centred covariance spectrum
    mean_norm: float = 0.38  # norm of the mean embedding relative to a unit vector
    between_share: float = 0.50  # share of the centred variance explained by cluster centres
    clusters: int = 2000
    query_noise: float = 0.25  # perturbation of a held-out point, relative to its within-cluster spread
    seed: int = 0

    def _basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1])
        q, _ = np.linalg.qr(rng.standard_normal((self.dimension, self.dimension)))
        lam = (np.arange(self.dimension) + 1.0) ** -self.alpha
        lam /= lam.sum()
        mean = rng.standard_normal(self.dimension)
        mean *= self.mean_norm / np.linalg.norm(mean)
        return q.astype(np.float32), np.sqrt(lam).astype(np.float32), mean.astype(np.float32)

    def _centres(self, q: np.ndarray, scale: np.ndarray, mean: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2])
        z = rng.standard_normal((self.clusters, self.dimension)).astype(np.float32)
        return mean + (z * (scale * np.sqrt(self.between_share))) @ q.T

    def _cluster_weights(self) -> np.ndarray:
        # topic sizes are skewed (a few big topics, a long tail): Zipf-like weights
        w = (np.arange(self.clusters) + 1.0) ** -0.6
        return w / w.sum()


class SyntheticVectors:
    """Rows of a synthetic corpus (and its query stream), unit-normalized float32."""

    def __init__(self, model: SpectrumModel | None = None) -> None:
        self.model = model or SpectrumModel()
        self._q, self._scale, self._mean = self.model._basis()
        self._centres = self.model._centres(self._q, self._scale, self._mean)
        self._cdf = np.cumsum(self.model._cluster_weights())
        self._within = self._scale * np.float32(np.sqrt(1.0 - self.model.between_share))

    @property
    def dimension(self) -> int:
        return self.model.dimension

    def _block(self, b: int, noise: float = 0.0) -> np.ndarray:
        rng = np.random.default_rng([self.model.seed, 3, b])
        u = rng.random(BLOCK)
        assign = np.minimum(np.searchsorted(self._cdf, u), self.model.clusters - 1)
        z = rng.standard_normal((BLOCK, self.dimension), dtype=np.float32)
        x = self._centres[assign] + (z * self._within) @ self._q.T
        if noise:
            n = rng.standard_normal((BLOCK, self.dimension), dtype=np.float32)
            x += (n * (self._within * np.float32(noise))) @ self._q.T
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the corpus; the same rows every time, whatever range they are asked in."""
        out = np.empty((max(stop - start, 0), self.dimension), dtype=np.float32)
        pos = start
        while pos < stop:
            b, off = divmod(pos, BLOCK)
            block = self._block(b)
            take = min(BLOCK - off, stop - pos)
            out[pos - start : pos - start + take] = block[off : off + take]
            pos += take
        return out

    def chunks(self, n: int, size: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) for the corpus of `n` rows, `size` rows at a time."""
        for start in range(0, n, size):
            yield start, self.rows(start, min(start + size, n))

    def queries(self, n: int) -> np.ndarray:
        """`n` queries: held-out draws from the same mixture (never corpus rows), perturbed a little."""
        out: list[np.ndarray] = []
        b = QUERY_STREAM // BLOCK
        while sum(o.shape[0] for o in out) < n:
            out.append(self._block(b, noise=self.model.query_noise))
            b += 1
        return np.concatenate(out)[:n]
