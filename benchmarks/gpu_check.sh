#!/usr/bin/env bash
# Run the conformance suite on every GPU device present: torch CUDA, JAX GPU, CuPy.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT: report folder [$OUT, else gpu-report]
#
# One command: it makes a virtualenv that sees the machine's own packages (a preinstalled CUDA
# torch is used as is), installs ffnspec and tries cupy-cuda12x and jax[cuda12] (each attempt
# bounded; offline machines skip them), lists the GPU devices each adapter finds, and runs
# act, num, hid, out on each, the backends in parallel, every run bounded so that the whole
# script ends within 8 minutes.  A device that is absent is skipped with the adapter's reason.
# It writes OUT/summary.md (verdict and counts per backend x device x family, every skip and
# why), OUT/<backend>-<device>/<family>/report.{json,md}, logs, nvidia-smi and versions.
# The shipped CPU deviations say device = "cpu", so GPU records are judged undeclared: each
# failure there is a finding to confirm with mpmath before declaring it for the GPU.
#
# FFNSPEC_GPU_CHECK_SELFTEST=1 runs the same pipeline on the CPU devices with one clause per
# family (no GPU needed: a check of this script).  FFNSPEC_GPU_CHECK_SECONDS overrides the
# 480-second budget, FFNSPEC_GPU_CHECK_INSTALL=0 skips the installs, FFNSPEC_GPU_CHECK_CACHE=DIR
# passes --cache-dir DIR (reference tables computed before: a fresh machine computes them itself).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${FFNSPEC_GPU_CHECK_SECONDS:-480}
DEADLINE=$((START + BUDGET - 15))       # 15 s for the summary
OUTDIR=${1:-${OUT:-gpu-report}}
SELFTEST=${FFNSPEC_GPU_CHECK_SELFTEST:-0}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG="$OUTDIR/gpu_check.log"
: > "$LOG"
say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( DEADLINE - $(date +%s) )); }

# ---- install -------------------------------------------------------------------------------
VENV=${FFNSPEC_GPU_CHECK_VENV:-.gpu-venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV" >> "$LOG" 2>&1 || { say "cannot make $VENV"; exit 2; }
fi
. "$VENV/bin/activate"
PIP="python -m pip --disable-pip-version-check -q --retries 1 --timeout 20"
if ! python -c "import ffnspec.adapters.scipy_backend" 2>/dev/null; then
    timeout 150 $PIP install -e ".[test]" >> "$LOG" 2>&1 \
        || timeout 60 $PIP install --no-deps --no-build-isolation -e . >> "$LOG" 2>&1 \
        || { say "cannot install ffnspec (see $LOG)"; exit 2; }
fi
if [ "${FFNSPEC_GPU_CHECK_INSTALL:-1}" = 1 ] && [ "$SELFTEST" != 1 ] && command -v nvidia-smi > /dev/null; then
    python -c "import cupy" 2>/dev/null || { timeout 120 $PIP install cupy-cuda12x >> "$LOG" 2>&1 \
        && say "installed cupy-cuda12x" || say "cupy-cuda12x not installable here (offline?); CuPy is skipped"; }
    python -c "import jax, sys; sys.exit(0 if any(d.platform == 'gpu' for d in jax.devices()) else 1)" 2>/dev/null \
        || { timeout 150 $PIP install "jax[cuda12]" >> "$LOG" 2>&1 \
        && say "installed jax[cuda12]" || say "jax[cuda12] not installable here (offline?); JAX GPU is skipped"; }
fi
{ nvidia-smi 2>&1 || echo "nvidia-smi: not found (no NVIDIA driver here)"; } > "$OUTDIR/nvidia-smi.txt"
python -m pip list --format=freeze 2>/dev/null | grep -iE '^(numpy|scipy|mpmath|torch|jax|jaxlib|jax.cuda.*|cupy.*|ml.dtypes)=' \
    > "$OUTDIR/versions.txt"
ffnspec backends > "$OUTDIR/backends.txt" 2>&1

# ---- what to run: (backend, device) pairs present, and the absent ones with their reason ----
python - "$SELFTEST" > "$OUTDIR/targets.tsv" 2>> "$LOG" <<'EOF'
import sys
from ffnspec.adapters import BackendError, load_backend
selftest = sys.argv[1] == "1"
for name in ("torch", "jax", "cupy"):
    try:
        b = load_backend(name)
    except BackendError as e:
        print(f"skip\t{name}\t-\t{e}")
        continue
    gpus = [d for d in b.devices if d != "cpu"]
    for d in (["cpu"] if selftest and "cpu" in b.devices else gpus):
        print(f"run\t{name}\t{d}\t")
    for d, why in (getattr(b, "absent_devices", None) or {}).items():
        print(f"skip\t{name}\t{d}\t{why}")
EOF
say "targets:"; sed 's/^/    /' "$OUTDIR/targets.tsv" | tee -a "$LOG"

if [ "$SELFTEST" = 1 ]; then
    FAMILIES=("act:act.tanh" "num:num.dtype" "hid:hid.relu" "out:out.softmax")
else  # quickest first, so a tight budget still reports them
    FAMILIES=("act:act.*" "num:num.*" "hid:hid.*" "out:out.*")
fi

run_target() {  # backend device: the families in turn, each bounded by what is left
    local backend=$1 device=$2 dir="$OUTDIR/$1-${2//:/_}" fam sel rc t
    mkdir -p "$dir"
    for entry in "${FAMILIES[@]}"; do
        fam=${entry%%:*}; sel=${entry#*:}; t=$(left)
        if [ "$t" -lt 20 ]; then echo "$fam	-" >> "$dir/status.tsv"; continue; fi
        rc=0
        timeout -s INT -k 10 "$t" ffnspec run --backend "$backend" --device "$device" --clauses "$sel" \
            --profile ci --report "$dir/$fam" ${FFNSPEC_GPU_CHECK_CACHE:+--cache-dir "$FFNSPEC_GPU_CHECK_CACHE"} \
            > "$dir/$fam.log" 2>&1 || rc=$?
        echo "$fam	$rc" >> "$dir/status.tsv"
    done
}

pids=()
while IFS=$'\t' read -r what backend device why; do
    [ "$what" = run ] || continue
    run_target "$backend" "$device" &
    pids+=($!)
done < "$OUTDIR/targets.tsv"
for p in "${pids[@]}"; do wait "$p"; done

# ---- summary -------------------------------------------------------------------------------
python - "$OUTDIR" "$SELFTEST" "$(( $(date +%s) - START ))" > "$OUTDIR/summary.md" <<'EOF'
import json, sys
from collections import Counter
from pathlib import Path
out, selftest, seconds = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
lines = ["# ffnspec GPU check" + (" (self-test on the CPU: not a GPU result)" if selftest else ""), "",
         f"Finished in {seconds} s.  Devices: see nvidia-smi.txt; versions: versions.txt.", "",
         "| backend | device | family | exit | verdict | records |", "|---|---|---|---|---|---|"]
skips = []
for row in (out / "targets.tsv").read_text().splitlines():
    what, backend, device, why = (row.split("\t") + [""] * 4)[:4]
    if what == "skip":
        skips.append(f"- {backend} {device}: skipped: {why}")
        continue
    d = out / f"{backend}-{device.replace(':', '_')}"
    status = dict(l.split("\t", 1) for l in (d / "status.tsv").read_text().splitlines()) if (d / "status.tsv").exists() else {}
    for fam, rc in status.items():
        rep = d / fam / "report.json"
        if rep.exists():
            data = json.loads(rep.read_text())
            counts = Counter(r["verdict"] for r in data["records"])
            verdict = data["summary"]["verdict"]
            if rc in ("124", "130", "137"):  # SIGINT at the time limit: pytest wrote what it had
                verdict += " (partial: stopped at the time limit)"
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        else:
            verdict, shown = ("not run: the time budget was spent" if rc == "-" else
                              "no report (stopped at the time limit)" if rc in ("124", "130", "137") else
                              f"no report (exit {rc}; see {fam}.log)"), ""
        lines.append(f"| {backend} | {device} | {fam} | {rc} | {verdict} | {shown} |")
lines += ["", "## Skipped", ""] + (skips or ["- none"])
lines += ["", "Exit 0: conforms; 1: does not conform (findings: see each report.md, then confirm with",
          "mpmath before declaring a GPU deviation); 2: usage; 3 or 130: internal error or interrupted."]
print("\n".join(lines))
EOF
say "summary: $OUTDIR/summary.md"
cat "$OUTDIR/summary.md"
