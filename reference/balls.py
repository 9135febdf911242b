"""Ball arithmetic for the reference functions: python-flint's arb behind mpmath's context API.

A reference ``f(ctx, *args)`` written once against an mpmath context runs unchanged on a
``BallContext``: every number is a ``Ball`` [m +- r] that certainly contains the exact value,
and every operation (arithmetic, exp, log, log1p, sin, cos, tanh, sech, ...) returns a ball enclosing
its exact result (arb's rigorous error bounds).

Branches must be decided, or the enclosure would hold for the wrong branch: a comparison,
``bool``, ``int`` or ``==`` whose answer is not the same for every point of the balls raises
``Undecided``; so does a NaN operand.  +-inf are arb's exact infinities (e^-inf = 0: masked
entries); a result that is not finite is left to mpmath by ``precision``, which retries an
undecided evaluation at a higher precision or falls back to mpmath, the reference of record.

python-flint is an optional dependency (the ``flint`` extra); ``AVAILABLE`` says whether it
imported.  Its precision is process-global: use ``precision_bits`` around an evaluation.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator

try:
    import flint
    from flint import arb
    AVAILABLE = True
except ImportError:  # the mpmath engine alone serves
    flint = arb = None
    AVAILABLE = False


class Undecided(ArithmeticError):
    """A branch, an integer conversion or a value is not determined by the balls at this precision."""


@contextlib.contextmanager
def precision_bits(prec: int) -> Iterator[None]:
    """Run with flint's working precision at ``prec`` bits, restoring it afterwards."""
    old = flint.ctx.prec
    flint.ctx.prec = prec
    try:
        yield
    finally:
        flint.ctx.prec = old


def _arb(x) -> "arb":
    if type(x) is Ball:
        return x.a
    if isinstance(x, (int, float)):
        if isinstance(x, float) and not math.isfinite(x):
            if math.isnan(x):
                raise Undecided("NaN operand")
            return arb.pos_inf() if x > 0 else arb.neg_inf()
        return arb(x)
    return NotImplemented


class Ball:
    """A real ball enclosing an exact value; arithmetic as arb's, decisions only when certain."""

    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a

    # -- arithmetic --------------------------------------------------------------------
    def __add__(self, o):
        if type(o) is Ball:
            return Ball(self.a + o.a)
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(self.a + o)

    def __radd__(self, o):
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(o + self.a)

    def __sub__(self, o):
        if type(o) is Ball:
            return Ball(self.a - o.a)
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(self.a - o)

    def __rsub__(self, o):
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(o - self.a)

    def __mul__(self, o):
        if type(o) is Ball:
            return Ball(self.a * o.a)
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(self.a * o)

    def __rmul__(self, o):
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(o * self.a)

    def __truediv__(self, o):
        if type(o) is Ball:
            return Ball(self.a / o.a)
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(self.a / o)

    def __rtruediv__(self, o):
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(o / self.a)

    def __pow__(self, o):
        if isinstance(o, int):
            return Ball(self.a ** o)
        o = _arb(o)
        return NotImplemented if o is NotImplemented else Ball(self.a ** o)

    def __neg__(self):
        return Ball(-self.a)

    def __pos__(self):
        return self

    def __abs__(self):
        return Ball(abs(self.a))

    # -- decisions: certain, or Undecided ----------------------------------------------
    def _cmp(self, o, certain, certainly_not):
        o = _arb(o)
        if o is NotImplemented:
            return NotImplemented
        if certain(self.a, o):
            return True
        if certainly_not(self.a, o):
            return False
        raise Undecided("comparison not decided by the balls")

    def __lt__(self, o):
        return self._cmp(o, lambda a, b: a < b, lambda a, b: a >= b)

    def __le__(self, o):
        return self._cmp(o, lambda a, b: a <= b, lambda a, b: a > b)

    def __gt__(self, o):
        return self._cmp(o, lambda a, b: a > b, lambda a, b: a <= b)

    def __ge__(self, o):
        return self._cmp(o, lambda a, b: a >= b, lambda a, b: a < b)

    def __eq__(self, o):
        return self._cmp(o, lambda a, b: a == b, lambda a, b: a != b)

    def __ne__(self, o):
        return self._cmp(o, lambda a, b: a != b, lambda a, b: a == b)

    __hash__ = None

    def __bool__(self) -> bool:
        if self.a.is_zero():
            return False
        if self.a != 0:
            return True
        raise Undecided("truth value not decided by the ball")

    def __int__(self) -> int:
        if not (self.a.is_exact() and self.a.is_integer()):
            raise Undecided("not certainly an integer")
        man, exp = self.a.mid().man_exp()
        man, exp = int(man), int(exp)
        return man << exp if exp >= 0 else man >> -exp

    __index__ = __int__

    def __repr__(self) -> str:
        return f"Ball({self.a.str(radius=True)})"


class BallContext:
    """The part of mpmath's context API that reference functions use, on ``Ball``s.

    Constants are computed at the flint precision in force when the context is made;
    ``ffnspec.reference.precision`` makes one per working precision."""

    def __init__(self):
        self.zero = Ball(arb(0))
        self.one = Ball(arb(1))
        self.ln2 = Ball(arb.const_log2())
        self.inf = Ball(arb.pos_inf())

    @staticmethod
    def mpf(x) -> Ball:
        if isinstance(x, Ball):
            return x
        if isinstance(x, str):
            return Ball(arb(x))
        return Ball(_arb(x))

    @staticmethod
    def exp(x) -> Ball:
        return Ball(_arb(x).exp())

    @staticmethod
    def log(x) -> Ball:
        a = _arb(x)
        if not a > 0:
            raise Undecided("log of a ball not certainly positive")
        return Ball(a.log())

    @staticmethod
    def log1p(x) -> Ball:
        a = _arb(x)
        if not a > -1:
            raise Undecided("log1p of a ball not certainly above -1")
        return Ball(a.log1p())

    @staticmethod
    def tanh(x) -> Ball:
        return Ball(_arb(x).tanh())

    @staticmethod
    def sin(x) -> Ball:
        return Ball(_arb(x).sin())

    @staticmethod
    def cos(x) -> Ball:
        return Ball(_arb(x).cos())

    @staticmethod
    def sech(x) -> Ball:
        return Ball(_arb(x).sech())

    @staticmethod
    def atanh(x) -> Ball:
        return Ball(_arb(x).atanh())

    @staticmethod
    def sqrt(x) -> Ball:
        a = _arb(x)
        if not a >= 0:
            raise Undecided("sqrt of a ball not certainly non-negative")
        return Ball(a.sqrt())

    @staticmethod
    def sin(x) -> Ball:
        return Ball(_arb(x).sin())

    @staticmethod
    def sign(x) -> Ball:
        b = Ball(_arb(x))
        return Ball(arb(1)) if b > 0 else Ball(arb(-1)) if b < 0 else Ball(arb(0))

    @staticmethod
    def ldexp(x, n: int) -> Ball:
        return Ball(_arb(x) * arb(2) ** int(n))

    @staticmethod
    def fsum(terms: Iterable) -> Ball:
        total = arb(0)
        for t in terms:
            total += t.a if type(t) is Ball else _arb(t)
        return Ball(total)

    @staticmethod
    def isfinite(x) -> bool:
        return _arb(x).is_finite()
