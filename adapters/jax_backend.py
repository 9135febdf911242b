"""The JAX backend: jax's own public ops, derivatives by ``jax.vjp`` / ``jax.jvp``.

Each op is called eagerly, exactly as a user calls it (jax.nn functions carry the
library's own ``jax.jit``; the adapter adds no jit around them and fuses nothing).
64-bit types need ``jax_enable_x64``, which the adapter switches on when it is
instantiated (a process-wide setting: without it jnp silently computes float64
requests in float32).

Conversions are exact for values representable in the target dtype: float64 ->
float16 / float32 through NumPy (a single exact cast), bfloat16 through float32 then
ml_dtypes.bfloat16 (exact for bfloat16 values), and back through float64.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after x64 is on)
import ml_dtypes  # noqa: E402  (a jax dependency)

from ffnspec.adapters import OpTable  # noqa: E402

NP_DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
             "float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}

# op name -> (the library's public function, its name as a user writes it)
_OPS: dict[str, tuple[Callable, str]] = {
    "neg": (jnp.negative, "jnp.negative"),
    "exp": (jnp.exp, "jnp.exp"),
    "log1p": (jnp.log1p, "jnp.log1p"),
    "add": (jnp.add, "jnp.add"),
    "sub": (jnp.subtract, "jnp.subtract"),
    "mul": (jnp.multiply, "jnp.multiply"),
    "sigmoid": (jax.nn.sigmoid, "jax.nn.sigmoid"),
    "softplus": (jax.nn.softplus, "jax.nn.softplus"),
    "log_sigmoid": (jax.nn.log_sigmoid, "jax.nn.log_sigmoid"),
    "tanh": (jnp.tanh, "jnp.tanh"),
    "silu": (jax.nn.silu, "jax.nn.silu"),
    "logaddexp": (jnp.logaddexp, "jnp.logaddexp"),
}
_ARITY = {"add": 2, "sub": 2, "mul": 2, "logaddexp": 2}
_DEVICE_KIND = {"cpu": "cpu", "gpu": "gpu"}


def _platform_devices() -> dict[str, Any]:
    found = {}
    for name, platform in _DEVICE_KIND.items():
        try:
            devs = jax.devices(platform)
        except RuntimeError:  # no such backend here
            continue
        if devs:
            found[name] = devs[0]
    return found


# dtype -> (a subnormal x, a normal a and b whose product is subnormal)
_SUBNORMAL_PROBES = {"float16": (2.0 ** -20, 2.0 ** -10, 2.0 ** -10),
                     "bfloat16": (2.0 ** -130, 2.0 ** -100, 2.0 ** -30),
                     "float32": (2.0 ** -140, 2.0 ** -100, 2.0 ** -30),
                     "float64": (2.0 ** -1070, 2.0 ** -1000, 2.0 ** -30)}


def _flushes_subnormals(device, dtype: str) -> bool:
    """Whether arithmetic in dtype on the device flushes subnormal results (FTZ) or reads
    subnormal inputs as zero (DAZ).  Probed with the library's own multiply, not assumed."""
    def put(v: float):
        host = np.array([v], dtype=np.float32 if dtype == "bfloat16" else NP_DTYPES[dtype])
        return jax.device_put(host.astype(NP_DTYPES[dtype]), device)

    x, a, b = (put(v) for v in _SUBNORMAL_PROBES[dtype])
    first = float(np.asarray(jnp.multiply(x, put(2.0)), dtype=np.float64)[0])
    second = float(np.asarray(jnp.multiply(a, b), dtype=np.float64)[0])
    return first == 0.0 or second == 0.0


def _literal(v: float) -> str:
    if np.isnan(v):
        return "float('nan')"
    if np.isinf(v):
        return "float('inf')" if v > 0 else "-float('inf')"
    return repr(float(v))


class JaxBackend:
    name = "jax"
    deviations = "jax.toml"

    def __init__(self) -> None:
        jax.config.update("jax_enable_x64", True)
        self._devices = _platform_devices()
        self.dtypes = frozenset(NP_DTYPES)
        self.devices = tuple(self._devices)
        flushing = [t for t in NP_DTYPES if any(_flushes_subnormals(d, t) for d in self._devices.values())]
        # One flag for the harness (it has no per-dtype convention); which dtypes flush, for the
        # record.  XLA CPU flushes float32/float64 (and bfloat16, computed in float32); float16 is
        # computed in float32, where its subnormals are normal, so it keeps them.
        self.conventions = {"flush_to_zero": "yes" if flushing else "no",
                            "flush_to_zero_dtypes": ",".join(flushing) or "none"}
        self.version = jax.__version__
        self.ops = OpTable({name: f for name, (f, _) in _OPS.items()})

    # -- conversions -------------------------------------------------------------
    def asarray(self, a: np.ndarray, dtype: str, device: str = "cpu") -> Any:
        a = np.asarray(a, dtype=np.float64)
        if dtype == "bfloat16":
            host = np.array(a, dtype=np.float32).astype(NP_DTYPES["bfloat16"])
        else:
            host = np.array(a, dtype=NP_DTYPES[dtype])
        return jax.device_put(host, self._devices[device])

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(np.asarray(x), dtype=np.float64, copy=True)

    def dtype_of(self, x: Any) -> str:
        return np.dtype(x.dtype).name

    # -- derivatives ---------------------------------------------------------------
    def vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any):
        out, pullback = jax.vjp(lambda *xs: fn(self.ops, *xs), *primals)
        return out, tuple(pullback(cotangent))

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        return jax.jvp(lambda *xs: fn(self.ops, *xs), tuple(primals), tuple(tangents))

    # -- reproducers ---------------------------------------------------------------
    def snippet(self, op_call: str, inputs: Sequence[float], dtype: str, device: str) -> str:
        """A one-line jax reproducer for ``op_call`` (as written by conformance.checks)."""
        m = re.search(r"ops\.(\w+)\(", op_call)
        if m is None or m.group(1) not in _OPS:
            raise ValueError(f"no op in {op_call!r}")
        op = m.group(1)
        n = _ARITY.get(op, 1)
        if len(inputs) != n:
            raise ValueError(f"{op} takes {n} argument(s), {len(inputs)} given")
        fname = _OPS[op][1]
        x64 = "jax.config.update('jax_enable_x64', True); " if dtype == "float64" else ""
        arr = lambda v: f"jnp.array([{_literal(v)}], dtype=jnp.{dtype})"  # noqa: E731
        if device != "cpu":
            arr = lambda v: (f"jax.device_put(jnp.array([{_literal(v)}], dtype=jnp.{dtype}), "  # noqa: E731
                             f"jax.devices({device!r})[0])")
        if "vjp(" in op_call:
            x = arr(inputs[0])
            return f"{x64}(lambda x: jax.vjp({fname}, x)[1](jnp.ones_like(x))[0])({x})"
        if "jvp(" in op_call:
            x = arr(inputs[0])
            return f"{x64}(lambda x: jax.jvp({fname}, (x,), (jnp.ones_like(x),))[1])({x})"
        return f"{x64}{fname}({', '.join(arr(v) for v in inputs)})"
