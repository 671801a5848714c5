"""Seeded random projections of gradients (Johnson–Lindenstrauss sketches).

A :class:`Sketch` maps vectors of ``in_dim`` to ``dim`` dims with a linear map ``S`` fixed by a
seed, so ``<S a, S b> ≈ <a, b>``:

- ``gaussian``: ``S_ij ~ N(0, 1/d)``. ``|<Sa,Sb> - <a,b>| <= eps·||a||·||b||`` holds for all pairs
  of n vectors with high probability once ``d >= C·log(n)/eps²``. ``S`` is generated in column
  blocks of ``block`` input coordinates, each from its own generator seeded by ``(seed, block)``, so
  it never has to exist as a whole (huge parameter counts are fine) and is identical on every
  device and rank. Blocks are cached while they fit in ``cache_mb``; beyond that they are
  regenerated per call (slow on CPU: prefer ``countsketch`` there).
- ``countsketch``: each input coordinate j goes to bucket ``h(j)`` with sign ``s(j)``
  (``E<Sa,Sb> = <a,b>``, variance ``<= 2||a||²||b||²/d``). O(in_dim) memory and time.
- ``auto`` (default): gaussian while the whole matrix fits in ``cache_mb``, else countsketch.

When ``in_dim <= out_dim`` the sketch is the identity (``dim = in_dim``): exact, nothing random.
"""

from __future__ import annotations

import torch

from rcs.utils.seed import torch_generator

_BLOCK = 8192


class Sketch:
    """Linear map R^in_dim -> R^dim; ``sketch(x)`` for ``x`` of shape [B, in_dim] (any float)."""

    def __init__(self, in_dim: int, out_dim: int, seed: int = 0, kind: str = "auto",
                 cache_mb: float = 1024.0, block: int = _BLOCK):
        if kind not in ("auto", "gaussian", "countsketch"):
            raise ValueError(f"sketch kind {kind!r} is not one of auto, gaussian, countsketch")
        self.in_dim, self.out_dim, self.seed, self.block = int(in_dim), int(out_dim), seed, block
        self.exact = self.in_dim <= self.out_dim
        self.dim = self.in_dim if self.exact else self.out_dim
        full_mb = self.in_dim * self.out_dim * 4 / 2**20
        if kind == "auto":
            kind = "gaussian" if full_mb <= cache_mb else "countsketch"
        self.kind = "identity" if self.exact else kind
        self._cache_blocks = full_mb <= cache_mb
        self._blocks: dict[tuple[int, str], torch.Tensor] = {}
        self._hash: tuple[torch.Tensor, torch.Tensor] | None = None

    def _gen(self, *parts: int) -> torch.Generator:
        return torch_generator("cpu", *parts, salt=0x9E3779B9, start=int(self.seed) & 0xFFFFFFFF)

    def __repr__(self) -> str:
        return f"Sketch({self.in_dim} -> {self.dim}, kind={self.kind}, seed={self.seed})"

    def _gauss_block(self, j: int, device: torch.device) -> torch.Tensor:
        key = (j, str(device))
        if key in self._blocks:
            return self._blocks[key]
        lo, hi = j * self.block, min(self.in_dim, (j + 1) * self.block)
        m = torch.randn(hi - lo, self.dim, generator=self._gen(1, j))
        m = (m / self.dim ** 0.5).to(device)
        if self._cache_blocks:
            self._blocks[key] = m
        return m

    def _count_hash(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._hash is None or self._hash[0].device != device:
            g = self._gen(2)
            bucket = torch.randint(0, self.dim, (self.in_dim,), generator=g)
            sign = torch.randint(0, 2, (self.in_dim,), generator=g).float() * 2 - 1
            self._hash = (bucket.to(device), sign.to(device))
        return self._hash

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Sketch the rows of ``x`` [B, in_dim] -> [B, dim] (float32, on x's device)."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"sketch expects [B, {self.in_dim}], got {tuple(x.shape)}")
        x = x.float()
        if self.exact:
            return x.clone()
        if self.kind == "countsketch":
            bucket, sign = self._count_hash(x.device)
            out = torch.zeros(x.shape[0], self.dim, device=x.device)
            out.index_add_(1, bucket, x * sign)
            return out
        out = torch.zeros(x.shape[0], self.dim, device=x.device)
        for j in range(0, (self.in_dim + self.block - 1) // self.block):
            lo = j * self.block
            out.addmm_(x[:, lo:lo + self.block], self._gauss_block(j, x.device))
        return out

    def matrix(self) -> torch.Tensor:
        """The dense ``[dim, in_dim]`` matrix (tests and small problems only)."""
        return self(torch.eye(self.in_dim)).T.contiguous()
