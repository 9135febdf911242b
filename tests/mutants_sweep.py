"""Deliberately broken backends for ``ffnspec sweep`` (tests/test_sweep.py): each must show up
in the sweep's maximum, histogram and worst input, so a clean sweep cell means something."""
from __future__ import annotations

import numpy as np

from ffnspec.adapters import OpTable, quiet
from ffnspec.adapters.numpy_backend import NumpyBackend, _sigmoid


class SigmoidViaFloat16(NumpyBackend):
    """sigmoid computed in float32 and rounded through float16 (11 bits): errors ~2^12 ULP."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "mutant-SigmoidViaFloat16"

        def sigmoid(z):
            return _sigmoid(z).astype(np.float16).astype(z.dtype)
        self.ops = OpTable({**self.ops, "sigmoid": quiet(sigmoid)})


# the range of inputs (float32 bit patterns) where BumpedGrad's derivative is one ULP off
BUMP_LO, BUMP_HI = 0x3F200000, 0x3F200400


class BumpedGrad(NumpyBackend):
    """Every derivative one ULP too large for x in [0.625, 0.625 + 1024 ulps): the reverse mode
    adds one ulp there (values correct everywhere)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "mutant-BumpedGrad"
        lo = float(np.array([BUMP_LO], np.uint32).view(np.float32)[0])
        hi = float(np.array([BUMP_HI], np.uint32).view(np.float32)[0])

        def vjp(fn, primals, cotangent):
            y, grads = NumpyBackend.vjp(self, fn, primals, cotangent)
            z = np.asarray(primals[0])
            g = grads[0]
            bumped = np.where((z >= lo) & (z < hi), np.nextafter(g, np.asarray(np.inf, g.dtype)), g)
            return y, (bumped,) + tuple(grads[1:])
        self.vjp = vjp
