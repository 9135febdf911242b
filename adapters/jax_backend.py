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

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after x64 is on)
import ml_dtypes  # noqa: E402  (a jax dependency)

from ffnspec.adapters import OpTable, flush_conventions, snippet_function
from ffnspec.reference.floatformat import python_literal  # noqa: E402

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


# ---- the hid family (hidden units, §6.3) ---------------------------------------------------
# jax.nn's own units, the slope passed as negative_slope.  jax has no PReLU, maxout or radial
# basis op: PReLU is jax.nn.leaky_relu with an array slope (broadcast, differentiable in it);
# maxout and RBF are composed from jnp primitives (jnp.max over blocks of k; the book's
# exp(-||x - W_i||^2 / sigma_i^2)).  jax arrays are immutable: no in-place variants.
def _maxout(z, k):
    """composed: jnp.max over consecutive blocks of k along the last axis."""
    return jnp.max(z.reshape(z.shape[:-1] + (z.shape[-1] // k, k)), axis=-1)


def _rbf(x, W, sigma):
    """composed: jnp.exp(-jnp.sum((x[:, None, :] - W) ** 2, -1) / sigma ** 2), written with mul."""
    d = x[:, None, :] - W[None, :, :]
    return jnp.exp(-(jnp.sum(d * d, axis=-1) / (sigma * sigma)))


_OPS.update({
    "relu": (jax.nn.relu, "jax.nn.relu"),
    "leaky_relu": (lambda z, alpha=0.01: jax.nn.leaky_relu(z, alpha), "jax.nn.leaky_relu"),
    "abs": (jnp.abs, "jnp.abs"),
    "hardtanh": (jax.nn.hard_tanh, "jax.nn.hard_tanh"),
    "prelu": (lambda z, alpha: jax.nn.leaky_relu(z, alpha), "jax.nn.leaky_relu"),
    "maxout": (_maxout, "jnp.max"),
    "rbf": (_rbf, "jnp.exp"),
    "lowrank": (lambda x, V, U: jnp.matmul(jnp.matmul(x, U.T), V.T), "jnp.matmul"),
})
# kink and tie conventions (spec/20_hid.toml [hid.conventions]), from jax's definitions: relu's
# custom JVP selects x > 0; leaky_relu is jnp.where(x >= 0, x, slope x); abs's JVP is
# select(x >= 0, 1, -1) at 0; hard_tanh is jnp.where(x > 1, 1, jnp.where(x < -1, -1, x));
# reduce_max splits ties evenly; relu(-0) = lax.max(-0, 0) = +0.
HID_CONVENTIONS = {"relu_grad_at_0": "0", "relu_at_minus_0": "+0", "leaky_relu_grad_at_0": "1",
                   "prelu_grad_at_0": "1", "abs_grad_at_0": "1", "hardtanh_grad_at_1": "1",
                   "hardtanh_grad_at_minus_1": "1", "maxout_ties": "even"}
# ---- the out family (output units and losses, §6.2) ----------------------------------------
# jax's own softmax, log_softmax (jax.nn) and logsumexp (jax.scipy.special), over the last axis.
# jax has no public loss functions (optax has them but is not a jax dependency and is not
# installed here), so every loss below is COMPOSED in this adapter from jax.nn / jnp /
# jax.scipy.special primitives, as the book writes it (say so in any report): cross-entropy with
# integer labels logsumexp(z) - z_y (GBC eq. 6.30), with a distribution -sum p log_softmax(z),
# BCE -y log_sigmoid(z) - (1-y) log_sigmoid(-z), 1/2 (yhat - y)^2, KL sum xlogy(p, p) -
# p log_softmax(z), the probability-form BCE with xlogy / xlog1py, the Gaussian NLL with a
# precision and the mixture density NLL.  Findings on these ops are findings on the composition
# in jax's arithmetic, not on a jax loss.  No pos_weight: not offered (not implemented).
import jax.scipy.special as _jsp  # noqa: E402


def _ce_labels(z, y):
    """composed (the book's eq. 6.30): logsumexp(z) - z_y."""
    return _jsp.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[..., None], axis=-1)[..., 0]


def _mdn_nll(w, mu, beta, y):
    """composed: -logsumexp(log_softmax(w) + log(beta)/2 - beta (y - mu)^2 / 2)."""
    d = y[..., None] - mu
    return -_jsp.logsumexp(jax.nn.log_softmax(w, axis=-1) + 0.5 * jnp.log(beta) - 0.5 * beta * d * d, axis=-1)


_OPS.update({
    "softmax": (lambda z: jax.nn.softmax(z, axis=-1), "jax.nn.softmax"),
    "log_softmax": (lambda z: jax.nn.log_softmax(z, axis=-1), "jax.nn.log_softmax"),
    "logsumexp": (lambda z: _jsp.logsumexp(z, axis=-1), "jax.scipy.special.logsumexp"),
    "cross_entropy": (_ce_labels, "jax.scipy.special.logsumexp"),
    "cross_entropy_sum": (lambda z, y: jnp.sum(_ce_labels(z, y)), "jax.scipy.special.logsumexp"),
    "cross_entropy_mean": (lambda z, y: jnp.mean(_ce_labels(z, y)), "jax.scipy.special.logsumexp"),
    "nll": (lambda lp, y: -jnp.take_along_axis(lp, y[..., None], axis=-1)[..., 0], "jnp.take_along_axis"),
    "cross_entropy_soft": (lambda z, p: -jnp.sum(p * jax.nn.log_softmax(z, axis=-1), axis=-1), "jax.nn.log_softmax"),
    "kl_div": (lambda z, p: jnp.sum(_jsp.xlogy(p, p) - p * jax.nn.log_softmax(z, axis=-1), axis=-1),
               "jax.scipy.special.xlogy"),
    "bce": (lambda z, y: -y * jax.nn.log_sigmoid(z) - (1.0 - y) * jax.nn.log_sigmoid(-z), "jax.nn.log_sigmoid"),
    "bce_prob": (lambda a, y: -(_jsp.xlogy(y, a) + _jsp.xlog1py(1.0 - y, -a)), "jax.scipy.special.xlogy"),
    "half_sq_error": (lambda yh, y: 0.5 * jnp.square(yh - y), "jnp.square"),
    "mse": (lambda yh, y: jnp.mean(jnp.square(yh - y)), "jnp.mean"),
    "mae": (lambda yh, y: jnp.mean(jnp.abs(yh - y)), "jnp.mean"),
    "gaussian_nll": (lambda mu, y, beta: 0.5 * beta * jnp.square(y - mu) - 0.5 * jnp.log(beta), "jnp.log"),
    "mdn_nll": (_mdn_nll, "jax.scipy.special.logsumexp"),
    "cov_from_factor": (lambda b: jnp.matmul(b, jnp.swapaxes(b, -1, -2)), "jnp.matmul"),
})
# softmax of a fully masked row: exp(-inf - (-inf)) = NaN, the preferred convention (spec/30_out.toml)
OUT_CONVENTIONS = {"softmax_all_masked": "nan"}


# ---- the bp family (whole programs, §6.5) ---------------------------------------------------
# jnp's own functions.  custom_relu is the seeds' custom ReLU (002) as a jax.custom_vjp: its
# backward zeroes the cotangent where the input is < 0.  A custom_vjp function has no forward
# mode (jax raises on jvp of it): reverse mode only.
@jax.custom_vjp
def custom_relu(x):
    """The seeds' custom ReLU: max(x, 0), with its own backward."""
    return jnp.maximum(x, 0)


def _custom_relu_fwd(x):
    return custom_relu(x), x


def _custom_relu_bwd(x, g):
    return (jnp.where(x < 0, jnp.zeros_like(g), g),)


custom_relu.defvjp(_custom_relu_fwd, _custom_relu_bwd)

_OPS.update({
    "div": (jnp.divide, "jnp.divide"),
    "log": (jnp.log, "jnp.log"),
    "sin": (jnp.sin, "jnp.sin"),
    "cos": (jnp.cos, "jnp.cos"),
    "maximum": (jnp.maximum, "jnp.maximum"),
    "where": (lambda c, a, b: jnp.where(c != 0, a, b), "jnp.where"),
    "matmul": (jnp.matmul, "jnp.matmul"),
    "sum": (lambda z, axis=None: jnp.sum(z, axis=axis), "jnp.sum"),
    "mean": (lambda z, axis=None: jnp.mean(z, axis=axis), "jnp.mean"),
    "custom_relu": (custom_relu, "custom_relu"),
})

_DEVICE_KIND = {"cpu": "cpu", "gpu": "gpu"}


_ABSENT: dict[str, str] = {}  # device name -> why jax has none here (filled by _platform_devices)


def _platform_devices() -> dict[str, Any]:
    found = {}
    for name, platform in _DEVICE_KIND.items():
        try:
            devs = jax.devices(platform)
        except RuntimeError as e:  # no such backend here
            _ABSENT[name] = f"jax.devices({platform!r}) raised: {str(e).splitlines()[0]}"
            continue
        if devs:
            found[name] = devs[0]
    return found


_literal = python_literal


# ---- the xor, opt and init families (§6.1, §6.4.1; seeds 002, 003) ------------------------
# The dense layer is the jnp composition x @ W + b (no flax); least squares is jnp.linalg.lstsq.
# Optimizers are optax's own transformations (the optax extra; without it those ops are absent
# and reported not implemented): optax.trace (momentum, Nesterov) and optax.add_decayed_weights
# then optax.scale(-lr), optax.scale_by_adam, optax.exponential_decay, each applied once to the
# state array (theta, then the buffers).  Initialisers are jax.nn.initializers' with a
# jax.random.PRNGKey(seed); W has shape (fan_out, fan_in), so in_axis = -1, out_axis = -2.
# 16-bit QR and least squares run in float32 and are rounded once (composed here).
def _wide(f):
    def op(*xs, **kw):
        dt = xs[0].dtype
        if dt in (jnp.float16, jnp.bfloat16):
            return f(*[x.astype(jnp.float32) for x in xs], **kw).astype(dt)
        return f(*xs, **kw)
    return op


def _key(seed):
    return jax.random.PRNGKey(int(seed))


def _scaling(scale, mode, distribution):
    return jax.nn.initializers.variance_scaling(scale, mode, distribution, in_axis=-1, out_axis=-2)


_MODES = {"fan_in": "fan_in", "fan_out": "fan_out"}

_OPS.update({
    "linear": (lambda x, W, b: jnp.matmul(x, W) + b, "jnp.matmul"),
    "lstsq": (_wide(lambda A, y: jnp.linalg.lstsq(A, y)[0]), "jnp.linalg.lstsq"),
    "init_xavier_uniform": (lambda w, gain=1.0, seed=0: _scaling(gain ** 2, "fan_avg", "uniform")(
        _key(seed), w.shape, w.dtype), "jax.nn.initializers.glorot_uniform"),
    "init_xavier_normal": (lambda w, gain=1.0, seed=0: _scaling(gain ** 2, "fan_avg", "truncated_normal")(
        _key(seed), w.shape, w.dtype), "jax.nn.initializers.glorot_normal"),
    "init_kaiming_uniform": (lambda w, gain=1.0, mode="fan_in", seed=0: _scaling(gain ** 2, _MODES[mode], "uniform")(
        _key(seed), w.shape, w.dtype), "jax.nn.initializers.variance_scaling"),
    "init_kaiming_normal": (lambda w, gain=1.0, mode="fan_in", seed=0: _scaling(gain ** 2, _MODES[mode], "truncated_normal")(
        _key(seed), w.shape, w.dtype), "jax.nn.initializers.he_normal"),
    "init_orthogonal": (_wide(lambda w, gain=1.0, seed=0: jax.nn.initializers.orthogonal(scale=gain)(
        _key(seed), w.shape, w.dtype)), "jax.nn.initializers.orthogonal"),
    "init_zeros": (lambda w: jax.nn.initializers.zeros(_key(0), w.shape, w.dtype), "jax.nn.initializers.zeros"),
})

try:
    import optax
except ImportError:  # the optimizer ops are then absent: not implemented
    optax = None

if optax is not None:
    def _sgd_step(state, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        theta, buf = state[0], state[1]
        if weight_decay:
            g, _ = optax.add_decayed_weights(weight_decay).update(g, optax.EmptyState(), theta)
        if momentum:
            g, tr = optax.trace(decay=momentum, nesterov=nesterov).update(g, optax.TraceState(trace=buf))
            buf = tr.trace
        d, _ = optax.scale(-lr).update(g, optax.EmptyState())
        return jnp.stack([optax.apply_updates(theta, d), buf])

    def _adam_step(state, g, step, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False):
        theta, m, v = state[0], state[1], state[2]
        if weight_decay and not decoupled:
            g, _ = optax.add_decayed_weights(weight_decay).update(g, optax.EmptyState(), theta)
        adam = optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps)
        u, st = adam.update(g, optax.ScaleByAdamState(count=jnp.asarray(step - 1, jnp.int32), mu=m, nu=v))
        if weight_decay and decoupled:
            u, _ = optax.add_decayed_weights(weight_decay).update(u, optax.EmptyState(), theta)
        u, _ = optax.scale(-lr).update(u, optax.EmptyState())
        return jnp.stack([optax.apply_updates(theta, u), st.mu, st.nu])

    def _lr_exponential(lr0, gamma, steps):
        sched = optax.exponential_decay(init_value=float(lr0[0]), transition_steps=1, decay_rate=gamma)
        return jnp.stack([jnp.asarray(sched(t), jnp.float64) for t in range(int(steps) + 1)]).astype(lr0.dtype)

    _OPS.update({
        "sgd_step": (_sgd_step, "optax.sgd"),
        "adam_step": (_adam_step, "optax.adamw"),
        "lr_exponential": (_lr_exponential, "optax.exponential_decay"),
    })
# optax.trace: v = mu v + g, then scale(-lr) (spec/60_opt.toml [opt.momentum.forms]); glorot_normal and
# he_normal are variance_scaling(..., "truncated_normal"): N(0, s'^2) cut at +-2 s' (spec/70_init.toml)
OPT_CONVENTIONS = {"momentum_form": "framework", "init_normal_law": "truncated_normal"}


COMPILED_MAX = 256 << 20  # bytes of compiled executables kept for this jaxlib and CPU (a full run writes ~100 MB)
COMPILED_STALE = 30 * 86400  # seconds: another jaxlib's or CPU's executables unused this long are deleted


def _fingerprint() -> str:
    """jaxlib's version and this CPU's model and features: executables compiled for one host are
    never offered to another (XLA's loader also refuses a machine mismatch)."""
    import hashlib
    import platform
    import jaxlib
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = "".join(sorted({ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                              if ln.startswith(("model name", "flags"))}))
    text = f"{jax.__version__}|{jaxlib.__version__}|{platform.machine()}|{platform.processor()}|{cpu}"
    return f"{jaxlib.__version__}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _bound(root: Path, mine: Path) -> None:
    """Once per run, before jax writes: this fingerprint's directory is emptied if it has grown
    past COMPILED_MAX (the next run compiles again), and other fingerprints' directories unused
    for COMPILED_STALE are deleted.  (jax's own bound, ``jax_compilation_cache_max_size``, scans
    the whole directory at every write: quadratic in a run that writes thousands of entries.)"""
    import shutil
    import time
    for d in (root.iterdir() if root.is_dir() else ()):
        with contextlib.suppress(OSError):
            files = [f.stat() for f in d.iterdir()]
            if d == mine and sum(f.st_size for f in files) > COMPILED_MAX:
                shutil.rmtree(d, ignore_errors=True)
            elif d != mine and time.time() - max((f.st_mtime for f in files), default=0) > COMPILED_STALE:
                shutil.rmtree(d, ignore_errors=True)


def keep_compiled() -> Path | None:
    """Keep jax's compiled executables (one per op, shape, dtype and derivative program: most of
    a run's time is compiling them) in the ffnspec cache, under ``jax-compiled/<fingerprint>``,
    bounded by ``_bound``.  A later run loads the very executables instead of compiling them
    again, so its results are the same.  Left alone if the user configured jax's cache
    (``jax_compilation_cache_dir``) or turned it off (``JAX_ENABLE_COMPILATION_CACHE=false``), or
    ffnspec keeps no cache.  Must run before jax compiles anything in the process (jax reads the
    setting once)."""
    from ffnspec.reference import tables
    root = tables.cache_dir()
    if root is None or jax.config.jax_compilation_cache_dir or not jax.config.jax_enable_compilation_cache:
        return None
    path = root / "jax-compiled" / _fingerprint()
    _bound(path.parent, path)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


class JaxBackend:
    name = "jax"
    deviations = "jax.toml"

    def __init__(self) -> None:
        jax.config.update("jax_enable_x64", True)
        self.compiled_cache = keep_compiled()
        self._devices = _platform_devices()
        self.dtypes = frozenset(NP_DTYPES)
        self.devices = tuple(self._devices)
        self.absent_devices = {name: why for name, why in _ABSENT.items() if name not in self._devices}
        self.version = jax.__version__
        self.ops = OpTable({name: f for name, (f, _) in _OPS.items()})
        # Probed with jnp.multiply on every device: one flag for the harness, which dtypes and
        # devices flush for the record.  XLA CPU flushes float32/float64 (and bfloat16, computed in
        # float32); float16 is computed in float32, where its subnormals are normal, so it keeps them.
        self.conventions = flush_conventions(self)
        self.conventions.update(HID_CONVENTIONS)  # the hid family's kinks and ties
        self.conventions.update(OUT_CONVENTIONS)  # the out family's fully masked softmax row
        self.conventions.update(OPT_CONVENTIONS)  # the opt family's momentum form

    # -- conversions -------------------------------------------------------------
    def asarray(self, a: np.ndarray, dtype: str, device: str = "cpu") -> Any:
        a = np.asarray(a, dtype=np.float64)
        if dtype == "bfloat16":
            host = np.array(a, dtype=np.float32).astype(NP_DTYPES["bfloat16"])
        else:
            host = np.array(a, dtype=NP_DTYPES[dtype])
        return jax.device_put(host, self._devices[device])

    def asindex(self, a: np.ndarray, device: str = "cpu") -> Any:
        """Class labels: int64 arrays (x64 is on)."""
        return jax.device_put(np.array(a, dtype=np.int64), self._devices[device])

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

    def hvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        """Hessian-vector product of a scalar program: forward over reverse, jax.jvp of jax.grad."""
        f = lambda *xs: fn(self.ops, *xs)  # noqa: E731
        out = f(*primals)
        _, hv = jax.jvp(jax.grad(f, argnums=tuple(range(len(primals)))), tuple(primals), tuple(tangents))
        return out, tuple(hv)

    # -- reproducers ---------------------------------------------------------------
    def snippet(self, op_call: str, inputs: Sequence[float], dtype: str, device: str) -> str:
        """A one-line jax reproducer for ``op_call`` (as written by conformance.machinery.reproduce)."""
        fname = snippet_function(op_call, {k: v[1] for k, v in _OPS.items()}, _ARITY, inputs)
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
