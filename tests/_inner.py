"""Run the conformance suite in-process (pytester) and read its report.json.

pytester unloads every module an inner run imports, so the heavy ones are imported
here first: the inner runs then share one copy of hypothesis (two copies break its
isinstance checks) and one in-memory reference cache.
"""
from __future__ import annotations

import json

import hypothesis  # noqa: F401
import mpmath  # noqa: F401
import pytest

import ffnspec.adapters.numpy_backend  # noqa: F401  (ml_dtypes registers its dtypes with numpy once)
import ffnspec.conformance.act  # noqa: F401  (family modules register into the checks' registries:
import ffnspec.conformance.hid  # noqa: F401   both must stay loaded together, or a reloaded registry
import ffnspec.conformance.out  # noqa: F401   would miss the cached family's registrations)
import ffnspec.conformance.bp  # noqa: F401
import ffnspec.conformance.checks.accuracy  # noqa: F401
import ffnspec.conformance.inputs.scalars  # noqa: F401
import ffnspec.conformance.machinery.report  # noqa: F401
import ffnspec.conformance.machinery.session  # noqa: F401
import ffnspec.reference.act  # noqa: F401

try:  # report.html's plots: matplotlib first imported inside an inner run would load twice
    import matplotlib.backends.backend_svg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.mathtext  # noqa: F401
    import matplotlib.ticker  # noqa: F401
except ImportError:  # the report extra is optional
    pass

_REPORTS: dict[tuple, tuple[int, dict | None, str]] = {}


def run_suite(pytester: pytest.Pytester, backend: str, dtypes=("float32",), clauses=(), *extra: str,
              cache: bool = True) -> tuple[int, dict | None, str]:
    """(exit status, report.json or None, output) of a derandomised in-process run."""
    key = (backend, tuple(dtypes), tuple(clauses), extra)
    if not cache or key not in _REPORTS:
        out = pytester.path / f"report{len(_REPORTS)}"
        args = ["--pyargs", "ffnspec.conformance", "-p", "no:cacheprovider", "-q", "--tb=short",
                f"--ffnspec-backend={backend}", "--ffnspec-profile=ci", f"--ffnspec-report={out}"]
        args += [f"--ffnspec-dtype={','.join(dtypes)}"] if dtypes else []
        args += [f"--ffnspec-clauses={','.join(clauses)}"] if clauses else []
        res = pytester.runpytest_inprocess(*args, *extra)
        path = out / "report.json"
        report = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        _REPORTS[key] = int(res.ret), report, res.stdout.str() + res.stderr.str()
    return _REPORTS[key]
