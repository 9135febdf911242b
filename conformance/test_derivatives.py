"""Derivatives through the backend's own reverse (vjp) and forward (jvp) modes: elementwise
ops within a mixed bound, piecewise-linear units exactly, structured units and ops over rows
within their clauses' bounds; special values."""
import pytest

from ffnspec.conformance.checks import composites, conventions, derivatives, piecewise, special_values
from ffnspec.conformance.machinery.session import explore_groups, groups


# Back-propagated derivatives must meet the mixed bound k u (|f'| + S) + eta in every dtype,
# not a finite-difference approximation.  §6.5, Higham §2.1.
@pytest.mark.ffnspec(kind="derivative")
def test_derivative(case):
    case.run(derivatives.elementwise, mode=case.mode)


# Derivatives at +-inf, 0 and NaN are exact limits; e.g. 0 * inf must not leak a NaN.  §6.5.
@pytest.mark.ffnspec(kind="derivative")
def test_derivative_special_values(case):
    if not case.clause.special:
        pytest.skip("clause has no special-value table")
    with case.supervised():
        special_values.elementwise(case.clause, case.target, case.record, mode=case.mode)


# The derivative is 0, +-1 or alpha_hat away from kinks and the declared convention at them, in
# reverse and forward mode (001: "defined left and right derivatives"; 004).  §6.3, §6.5.
@pytest.mark.ffnspec(kind="subgradient")
def test_subgradient(case):
    with case.supervised():
        fmt = case.target.fmt
        z = piecewise.inputs(fmt, case.clause, case.region(), nan=False)
        used = piecewise.subgradient(case.clause, case.target, case.record, z, mode=case.mode)
        case.explore(piecewise.subgradient, mode=case.mode)
        conventions.finish(case.record, case.target, used)


# Gradients of structured units through each AD mode: the shared PReLU slope sums its uses
# (§6.5.6), maxout routes to the arg-max with declared ties, RBF gradients in x, W, sigma.  §6.5.
@pytest.mark.ffnspec(kind="gradient")
def test_gradient(case):
    with case.supervised():
        used = composites.run(case.clause, case.target, case.record, case.region(), mode=case.mode)
        case.explore(composites.run, mode=case.mode)
        conventions.finish(case.record, case.target, used)


# Jacobian-vector products through the backend's own reverse (J^T v) and forward (J t) modes,
# against the exact products, with random directions.  §6.5; Higham 2002 §3.
# ... and, where the clause asks, each partial at every infinite or NaN combination of its op's
# arguments: the joint limit (d/db logaddexp(+inf, 1) = 0).  IEEE 754-2019 §9.2.
@pytest.mark.ffnspec(kind="reduction_derivative")
def test_reduction_derivative(case):
    with case.supervised():
        for i, group in enumerate(groups(case)):
            derivatives.reduction(case.clause, case.target, case.record, group, mode=case.mode, salt=i)
        explore_groups(case, derivatives.reduction, mode=case.mode, salt=1000)
        if special_values.has_generated_derivative(case.clause):
            special_values.generated_derivative(case.clause, case.target, case.record, mode=case.mode)


# Random programs over the graph primitives (shared and broadcast operands, matmul, reductions,
# softmax rows): value, reverse and forward mode, Hessian-vector products against the exact
# answer within a running error bound derived from the same graph; failures shrink.  §6.5;
# Higham 2002 §3.3.
@pytest.mark.ffnspec(kind="graph")
def test_graph(case):
    with case.supervised():
        composites.run_drawn(case.clause, case.target, case.record, case.settings)
