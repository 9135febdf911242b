"""A stand-in for cupy and cupyx.scipy.special built from NumPy and SciPy, to test the CuPy
adapter's logic without a GPU.

It keeps the rules of CuPy that an adapter can get wrong: arrays live on a device (a NumPy
subclass tagged with a device id), functions reject host (NumPy) arrays as CuPy's do, an array
may only meet arrays of the current device (``cuda.Device(i)`` as a context), ``asnumpy`` is
the way back, reductions return 0-d device arrays, and there is no ``errstate``.
"""
from __future__ import annotations

import types
from typing import Any

import numpy as np
import scipy.special

from ffnspec.adapters.cupy_backend import CupyBackend


def make(count: int = 1, *, fail: Exception | None = None) -> tuple[types.ModuleType, types.ModuleType]:
    """(fake cupy, fake cupyx.scipy.special) with ``count`` devices; ``fail`` is raised by
    getDeviceCount (no driver)."""
    state = types.SimpleNamespace(current=0, calls=0)

    class DeviceArray(np.ndarray):
        device_id: int

        def __array_finalize__(self, obj):
            self.device_id = getattr(obj, "device_id", state.current)

        @property
        def device(self):
            return Device(self.device_id)

        def __array_ufunc__(self, ufunc, method, *inputs, **kw):
            return kernel(getattr(ufunc, method))(*inputs, **kw)

    class Device:
        def __init__(self, i: int | None = None):
            self.id = state.current if i is None else i
            if not 0 <= self.id < count:
                raise ValueError(f"invalid device {self.id}")

        def __enter__(self):
            self._prev, state.current = state.current, self.id
            return self

        def __exit__(self, *exc):
            state.current = self._prev

    def to_device(r: Any) -> Any:
        if isinstance(r, tuple):
            return tuple(to_device(x) for x in r)
        if isinstance(r, (np.ndarray, np.generic)):
            out = np.asarray(r).view(DeviceArray)
            out.device_id = state.current
            return out
        return r

    def host(a: Any) -> Any:
        if isinstance(a, DeviceArray):
            if a.device_id != state.current:
                raise ValueError(f"array on device {a.device_id}, current device {state.current}")
            return a.view(np.ndarray)
        if isinstance(a, np.ndarray):
            raise TypeError("Unsupported type <class 'numpy.ndarray'>")  # CuPy takes no host arrays
        if isinstance(a, (list, tuple)):
            return type(a)(host(x) for x in a)
        return a

    def kernel(f):
        def call(*args, **kw):
            state.calls += 1
            kw = {k: host(v) for k, v in kw.items()}
            return to_device(f(*[host(a) for a in args], **kw))
        call.__name__ = getattr(f, "__name__", "kernel")
        return call

    def asarray(a, dtype=None):
        return to_device(np.array(a.view(np.ndarray) if isinstance(a, DeviceArray) else a, dtype=dtype))

    def asnumpy(a):
        return np.array(a.view(np.ndarray) if isinstance(a, DeviceArray) else a)

    def device_count():
        if fail is not None:
            raise fail
        return count

    cp = types.ModuleType("fake_cupy")
    for name in dir(np):
        v = getattr(np, name)
        if name.startswith("_") or name == "errstate" or isinstance(v, (type, types.ModuleType)) or not callable(v):
            setattr(cp, name, v)  # dtypes, constants, submodules
        else:
            setattr(cp, name, kernel(v))
    del cp.errstate
    cp.asarray, cp.array, cp.asnumpy, cp.ndarray = asarray, asarray, asnumpy, DeviceArray
    cp.__version__ = "13.0.0-fake"
    cp.cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(
        getDeviceCount=device_count, runtimeGetVersion=lambda: 12080))
    cp.state = state
    special = types.ModuleType("fake_cupyx_scipy_special")
    for name in ("expit", "log_expit", "softmax", "log_softmax", "logsumexp"):  # what cupyx.scipy.special has
        setattr(special, name, kernel(getattr(scipy.special, name)))
    return cp, special


class FakeCupy(CupyBackend):
    """The CuPy adapter over the fake namespace, one device (loadable as tests.fake_cupy:FakeCupy)."""

    def __init__(self) -> None:
        super().__init__(*make(1))


class FakeCupyTwoDevices(CupyBackend):
    def __init__(self) -> None:
        super().__init__(*make(2))
