"""The init family's statistics (reference/init.py, conformance/init.py): the thresholds are what
the clauses state, the power against the named errors is >= 0.999 at the chosen sample sizes in
every format, and the family-wise budget covers every test a run performs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ffnspec import spec
from ffnspec.conformance import init as check
from ffnspec.reference import init as ref
from ffnspec.reference.floatformat import FORMATS

N = check._SHAPE[0] * check._SHAPE[1]


def test_thresholds_are_the_stated_numbers():
    # The derivations quote e = 0.00608 and the chi^2 band [0.9828, 1.0173].  [init.xavier_uniform] [init.xavier_normal]
    assert ref.ALPHA == pytest.approx(1e-6 / 128)
    assert ref.dkw_epsilon(N) == pytest.approx(0.00608, abs=1e-5)
    lo, hi = ref.chi2_band(N)
    assert lo == pytest.approx(0.9828, abs=1e-4) and hi == pytest.approx(1.0173, abs=1e-4)
    assert ref.hoeffding_t(check.SIGN_DRAWS, 1.0) == pytest.approx(0.389, abs=1e-3)


def test_budget_covers_a_run():
    # Bonferroni: at most TESTS_PER_RUN tests a run (2 per configuration, 1 sign test, 4 dtypes).  [init.*]
    configs = {"xavier_uniform": 1, "xavier_normal": 1, "kaiming_uniform": 2, "kaiming_normal": 2}
    per_dtype = 2 * sum(configs.values()) + 1
    assert 4 * per_dtype <= ref.TESTS_PER_RUN
    assert {c.id for c in spec.clauses() if c.tolerance.criterion == "statistical"} == {
        "init.xavier_uniform", "init.xavier_normal", "init.kaiming_uniform", "init.kaiming_normal", "init.orthogonal"}


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("family", ["uniform", "normal", "truncated_normal"])
def test_power_against_named_errors(fmt, family):
    # A 5 % sigma error, swapped fans and a wrong gain are each missed with probability <= 1e-3.  [init.*]
    miss = check.power(family, FORMATS[fmt], N)
    assert max(miss.values()) <= ref.MISS, miss


def test_ks_statistic_and_null_pass():
    # Exact draws from the null pass both tests; draws with a 5 % larger sigma fail the moment test.  [init.xavier_normal]
    rng = np.random.default_rng(0)
    f32 = FORMATS["float32"]
    ok = check.distribution_test(rng.normal(0, 0.5, N), "normal", 0.5, f32)
    assert ok["ks"] <= 1 and ok["moment"] <= 1
    bad = check.distribution_test(rng.normal(0, 0.525, N), "normal", 0.5, f32)
    assert bad["moment"] > 1
    u = check.distribution_test(rng.uniform(-2, 2, N), "uniform", 2.0, f32)
    assert u["ks"] <= 1 and u["moment"] <= 1
    assert check.distribution_test(rng.normal(0, 2 / math.sqrt(3), N), "uniform", 2.0, f32)["ks"] > 1
