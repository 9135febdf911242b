"""Plots and rendered math for report.html, drawn with matplotlib (the ``report`` extra).

matplotlib is imported lazily, on the first plot: the pytest plugin and the CLI stay light to
import, and without matplotlib ``available()`` is False and report.html says how to get plots.
Every function returns a self-contained ``data:`` URI (an SVG image), so the page needs no
network and no file beside it.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import math
import re
from pathlib import Path
from typing import Callable, Sequence

INSTALL_HINT = "pip install 'ffnspec[report]' (matplotlib), then `ffnspec html REPORT_DIR` re-renders this page from report.json"
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


# ---- rendered images, kept between runs: a plot is a function of its data, so a warm run's
# report (the same records) draws nothing.  Kept in the reference cache's plots/ (its size
# bound covers it), keyed by the data, the renderer and matplotlib's version; at most
# KEEP_BYTES of them, the latest report's first (a full run's page is about 2.3 MB).
KEEP_BYTES = 8 * 1024 * 1024
_images: dict[str, str] | None = None
_used: dict[str, None] = {}
_added = [False]


def _images_path() -> Path | None:
    from ffnspec.reference import tables
    root = tables.cache_dir()
    return None if root is None else root / "plots" / "images.json"


def _loaded() -> dict[str, str]:
    global _images
    if _images is None:
        path = _images_path()
        try:
            _images = json.loads(path.read_text(encoding="utf-8")) if path is not None and path.exists() else {}
        except (OSError, ValueError):
            _images = {}
        if not isinstance(_images, dict):
            _images = {}
    return _images


def kept(render: Callable[..., str | None]) -> Callable[..., str | None]:
    """``render(*data)`` -> a data URI, looked up by the data before drawing."""
    @functools.wraps(render)
    def cached(*args, **kw):
        import matplotlib
        text = json.dumps([render.__name__, matplotlib.__version__, _SOURCE, args, kw], sort_keys=True,
                          default=lambda a: a.tolist() if hasattr(a, "tolist") else repr(a))
        key = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        images = _loaded()
        uri = images.get(key)
        if uri is None:
            uri = render(*args, **kw)
            if uri is not None:
                images[key] = uri
                _added[0] = True
        _used[key] = None
        return uri
    return cached


def save_images() -> None:
    """Write the kept images (the latest report's first), if this process drew any."""
    path = _images_path()
    if path is None or not _added[0] or _images is None:
        return
    keep, size = {}, 0
    for k in list(_used) + [k for k in _images if k not in _used]:
        if k in _images and k not in keep:
            size += len(_images[k])
            if size > KEEP_BYTES:
                break
            keep[k] = _images[k]
    from ffnspec.reference import store
    try:
        store.write_atomically(path, lambda fh: fh.write(json.dumps(keep).encode()))
    except OSError:  # a read-only cache only costs the next report its drawing
        return
    _added[0] = False


def available() -> bool:
    """Whether matplotlib can be imported here."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=72)
    FigureCanvasSVG(fig)
    return fig


def _plain(v: float, _pos=None) -> str:
    """A tick label as plain text (symlog's default labels go through mathtext: slow)."""
    if v == 0:
        return "0"
    return f"{v:g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def _plain_ticks(ax) -> None:
    from matplotlib.ticker import FuncFormatter, NullLocator
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(_plain))
        axis.set_minor_locator(NullLocator())  # symlog's minor ticks: many lines to draw, little to read


def _uri(fig) -> str:
    import matplotlib
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ffnspec"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _number(v) -> float:
    """A report.json number ("inf"/"nan" strings included) as a float."""
    return float(v)


Series = tuple[str, Sequence, Sequence]  # label (mode, device), inputs, errors (criterion units)


@kept
def error_curve(panels: dict[str, Sequence[Series]], bound: float | None, *, title: str, unit: str) -> str:
    """Error (criterion units) against the input: one panel per dtype (each over its own input
    range: float16 spans +-65504, float64 +-1.8e308), one line per series (mode, device), the
    MUST bound dashed; each panel's error axis linear unless its errors exceed ten times the bound;
    inputs on a symmetric-log axis; non-finite errors drawn at the top as x."""
    import numpy as np
    with np.errstate(over="ignore", invalid="ignore"):  # axes spanning +-1.8e308
        return _error_curve(panels, bound, title, unit)


def _error_curve(panels: dict[str, Sequence[Series]], bound: float | None, title: str, unit: str) -> str:
    from matplotlib.ticker import SymmetricalLogLocator
    fig = _figure(2.2 + 2.3 * len(panels), 2.5)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (dtype, series) in zip(axes, panels.items()):
        finite_max = max([0.0] + [_number(v) for _, _, e in series for v in e if math.isfinite(_number(v))])
        top = max(finite_max, bound or 0.0, 1e-300) * 1.15
        log_y = bool(bound) and finite_max > 10 * bound
        xs_all = []
        for k, (label, x, e) in enumerate(series):
            xs = [_number(v) for v in x]
            es = [_number(v) for v in e]
            xs_all += [v for v in xs if math.isfinite(v)]
            c = _COLOURS[k % len(_COLOURS)]
            ax.plot(xs, [v if math.isfinite(v) else math.nan for v in es], lw=0.9, color=c, label=label or dtype,
                    marker=".", ms=2)
            over = [(a, top) for a, v in zip(xs, es) if not math.isfinite(v)]
            if over:
                ax.plot(*zip(*over), "x", color=c, ms=5)
        if bound is not None:
            ax.axhline(bound, color="black", ls="--", lw=1, label=f"bound {bound:g}")
        if log_y:
            ax.set_yscale("symlog", linthresh=bound)
        ax.set_xscale("symlog", linthresh=1.0)
        widest = max([1.0] + [abs(v) for v in xs_all])
        step = max(1, math.ceil(math.log10(widest) / 3))  # about three decades labelled on each side
        ax.xaxis.set_major_locator(SymmetricalLogLocator(base=10.0 ** step, linthresh=1.0))
        if xs_all and min(xs_all) < max(xs_all):
            ax.set_xlim(min(xs_all), max(xs_all))
        ax.set_title(dtype, fontsize=8)
        ax.set_xlabel("input z", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3, axis="y")
        if ax is axes[0] or len({label for label, _, _ in series}) > 1:
            ax.legend(fontsize=6, loc="upper left")
        _plain_ticks(ax)
        ax.set_ylim(bottom=0, top=top * (3 if log_y else 1))
    axes[0].set_ylabel(f"error ({unit})", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.99, top=0.82, bottom=0.18, wspace=0.25)
    return _uri(fig)


@kept
def ulp_histogram(counts: dict[str, Sequence[int]], edges: Sequence[float]) -> str:
    """Inputs per ULP-error bin, grouped bars per dtype, log count axis."""
    fig = _figure(6.4, 2.6)
    ax = fig.add_subplot()
    labels = [f"[{a:g}, {b:g})" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]:g}", "non-finite"]
    width = 0.8 / max(1, len(counts))
    for k, (dtype, c) in enumerate(counts.items()):
        ax.bar([i + k * width for i in range(len(c))], [max(v, 0) for v in c], width, label=dtype,
               color=_COLOURS[k % len(_COLOURS)])
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, fontsize=7)
    ax.set_xlabel("ULP error of the exact value")
    ax.set_ylabel("inputs")
    ax.set_title("ULP errors of the elementwise checks, per dtype", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    from matplotlib.ticker import FuncFormatter
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.18)
    return _uri(fig)


_SUBST = ((r"\tfrac", r"\frac"), (r"\dfrac", r"\frac"), (r"\implies", r"\Rightarrow"), (r"\mid", "|"),
          (r"\lVert", r"\Vert"), (r"\rVert", r"\Vert"), (r"\|", r"\Vert"), (r"\widehat", r"\hat"),
          (r"\textstyle", ""), (r"\le ", r"\leq "), (r"\ge ", r"\geq "))


def _mathtext(tex: str) -> str:
    """The subset of LaTeX matplotlib's mathtext parses: sizing commands dropped, \\text and
    \\operatorname as roman, single-digit \\frac12 braced."""
    s = " ".join(tex.split())
    s = re.sub(r"\\[Bb]ig+[lr]?", "", s)
    s = re.sub(r"\\operatorname\{(\w+)\}", r"\\mathrm{\1}", s)
    s = re.sub(r"\\text\{([^}]*)\}", lambda m: r"\mathrm{" + m.group(1).replace(" ", r"\ ") + "}", s)
    s = re.sub(r"\\frac(\w)(\w)", r"\\frac{\1}{\2}", s)
    for a, b in _SUBST:
        s = s.replace(a, b)
    return s


@kept
def statement_image(tex: str) -> str | None:
    """A statement rendered with mathtext, or None where mathtext cannot parse it (the page
    then shows the TeX source)."""
    from matplotlib import mathtext
    buf = io.BytesIO()
    try:
        mathtext.math_to_image("$" + _mathtext(tex) + "$", buf, format="svg", dpi=90)
    except Exception:  # mathtext's parser: a ValueError subclass, or anything from an odd construct
        return None
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sweep_histogram(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> bytes:
    """An SVG bar chart (log counts) of sweep error histograms: one group of bars per error bin,
    one bar per (backend, quantity) in ``series``."""
    import matplotlib
    fig = _figure(max(8.0, 0.45 * len(labels)), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(series), 1)
    for k, (name, counts) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [c if c > 0 else 0 for c in counts], width=width, label=name, color=_COLOURS[k % len(_COLOURS)])
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, fontsize=7)
    ax.set_xlabel("error (ULP of the exact value)")
    ax.set_ylabel("inputs")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ffnspec"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return buf.getvalue()


_SOURCE = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()  # a changed renderer draws again
