"""Ground rules for every op: dtype, shape, no mutation, length invariance."""
import numpy as np
import pytest

from ffnspec import spec
from ffnspec.conformance import checks, reductions
from ffnspec.conformance.inputs import scalars

STRUCTURAL = {"num.dtype", "num.shape", "num.no_mutation"}


def _ops(case):
    return checks.ops_in_scope([c for c in spec.clauses() if c.family != "num"])


def _sample(case, n=1026):
    z = case.region()
    rng = np.random.default_rng(7)
    return rng.permutation(np.concatenate([z[np.linspace(0, z.size - 1, n - 8).astype(int)], [0.0, -0.0, 1.0, -1.0,
                                                                                                  0.5, -0.5, 2.0, -2.0]]))


# Every op keeps the input dtype and shape and leaves its inputs untouched; the harness
# supervises each call, this check makes the rule visible per op.  [num.dtype] [num.shape] [num.no_mutation]
@pytest.mark.ffnspec(kind="invariance")
def test_invariance(case):
    with case.supervised():
        if case.clause.id in STRUCTURAL:
            checks.structural(case.clause, case.target, case.record, _ops(case), _sample(case))
            reductions.structural(case.clause, case.target, case.record)  # ops over rows, losses
        elif case.clause.id == "num.length_invariance":
            checks.length_invariance(case.clause, case.target, case.record, _ops(case), _sample(case),
                                     scalars.LENGTHS)
        else:
            raise AssertionError(f"no check for invariance clause {case.clause.id}")
