"""Deliberately broken backends for the xor family: the NumPy backend with one defect each,
under the conventions of tests/mutants.py.  Load one as ``--ffnspec-backend=tests.mutants_xor:BiasTwice``."""
from __future__ import annotations

import numpy as np

from tests.mutants import Mutant


class XorMutant(Mutant):
    pass


class BiasTwice(XorMutant):
    defect = "a dense layer that adds its bias twice"
    catches = ("xor.linear.compose", "xor.relu_net", "xor.neuron", "xor.uat")
    replace = {"linear": lambda x, W, b: x @ W + b + b}


class Float16Intermediates(XorMutant):
    defect = "a dense layer rounding its result through float16 (the XOR network's intermediates in half precision)"
    catches = ("xor.uat",)
    spares = ("xor.relu_net",)  # small integers survive float16: only the approximation sees it
    replace = {"linear": lambda x, W, b: (x @ W + b).astype(np.float16).astype(x.dtype)}


class RidgeLstsq(XorMutant):
    defect = "least squares with a ridge term 1e-3 I (not the minimiser of the MSE)"
    catches = ("xor.lstsq",)
    replace = {"lstsq": lambda A, y: np.linalg.solve(A.T @ A + 1e-3 * np.eye(A.shape[1], dtype=A.dtype), A.T @ y)}


class Base2Softmax(XorMutant):
    defect = "softmax with 2^z in place of e^z"
    catches = ("xor.softmax_example",)
    replace = {"softmax": lambda z: np.exp2(z - z.max(-1, keepdims=True)) / np.sum(np.exp2(z - z.max(-1, keepdims=True)), -1, keepdims=True)}


MUTANTS = [c for c in XorMutant.__subclasses__() if c.catches]
