#!/usr/bin/env bash
# Sets up, or brings up to date, everything ov2_ros needs on a fresh Debian 12 / Python 3.11
# machine: a virtual environment (.venv) with the pinned dependencies of requirements.txt, the
# ov2_ros ROS interfaces (msg/, srv/) built with rosidl into it, and ov2_ros installed editable
# (the `ov2` and `ov2_node` commands). Idempotent: a step whose inputs have not changed since it
# last succeeded is skipped, so running it again costs about a second.
#
# Usage: tools/setup.sh            (then use .venv/bin/ov2, .venv/bin/ov2_node, .venv/bin/pytest)
# Environment: OV2_VENV (default <repo>/.venv), PYTHON (default python3.11).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${OV2_VENV:-$repo/.venv}
python=${PYTHON:-python3.11}
stamps=$venv/.ov2-setup
log() { printf '[setup] %s\n' "$*" >&2; }

# A step runs when the hash of its inputs differs from the one recorded at its last success.
inputs_hash() { (cd "$repo" && cat "$@" | sha256sum | cut -d' ' -f1); }
is_current() { [[ -f $stamps/$1 && $(cat "$stamps/$1") == "$2" ]]; }
mark_done() { mkdir -p "$stamps"; printf '%s\n' "$2" > "$stamps/$1"; }

if ! command -v "$python" >/dev/null; then
  echo "setup: $python not found; ov2_ros needs CPython 3.11 (the ROS 2 Jazzy wheels are cp311)" >&2
  exit 1
fi

if [[ ! -x $venv/bin/python ]]; then
  log "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

deps_hash=$(inputs_hash requirements.txt)
if ! is_current deps "$deps_hash"; then
  log "installing pinned dependencies (requirements.txt)"
  mkdir -p "$repo/build"
  # pip's output goes to a log (this machine's pip config warns about absent local indexes).
  if ! { "${pip[@]}" install --upgrade pip && "${pip[@]}" install -r "$repo/requirements.txt"; } \
      > "$repo/build/pip.log" 2>&1; then
    grep -v '^WARNING: Location' "$repo/build/pip.log" | tail -n 30 >&2
    echo "setup: installing dependencies failed; see $repo/build/pip.log" >&2
    exit 1
  fi
  mark_done deps "$deps_hash"
fi

# The rosidl CMake targets exported by the PyPI wheels name the interpreter paths of the
# manylinux build image; point them at this machine's Python headers and this venv.
link_build_image_paths() {
  local image=/opt/python/cp311-cp311
  local include site
  include=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$image/include" "$image/lib/python3.11" || {
    echo "setup: cannot create $image (the rosidl build needs it); run as root or create it" >&2
    exit 1
  }
  for pair in "$include:$image/include/python3.11" "$site:$image/lib/python3.11/site-packages"; do
    local target=${pair%%:*} link=${pair#*:}
    if [[ -e $link && ! -L $link ]]; then
      echo "setup: $link exists and is not a symlink; refusing to replace it" >&2
      exit 1
    fi
    ln -sfn "$target" "$link"
  done
}

# Always (cheap): another checkout's setup on this machine may have pointed the links at its own
# venv, and colcon builds against the wheels (tests/test_colcon_build.py) need them to be ours.
link_build_image_paths
interfaces_hash=$(inputs_hash requirements.txt CMakeLists.txt package.xml msg/*.msg srv/*.srv)
interfaces_hash="$interfaces_hash-$venv"
if ! is_current interfaces "$interfaces_hash"; then
  log "building the ov2_ros interfaces with rosidl"
  build=$repo/build/interfaces
  rm -rf "$build"; mkdir -p "$repo/build"
  (
    export PATH=$venv/bin:$PATH AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$venv/bin/python" \
      -DOV2_INSTALL_PYTHON_SOURCES=OFF -DPYTHON_INSTALL_DIR=lib/ov2_ros_interfaces \
      > "$repo/build/interfaces.log" 2>&1 &&
    cmake --build "$build" -j "$(nproc)" >> "$repo/build/interfaces.log" 2>&1 &&
    cmake --install "$build" >> "$repo/build/interfaces.log" 2>&1
  ) || { echo "setup: interface build failed; see $repo/build/interfaces.log" >&2; tail -n 30 "$repo/build/interfaces.log" >&2; exit 1; }
  mark_done interfaces "$interfaces_hash"
fi

package_hash=$(inputs_hash setup.py)
if ! is_current package "$package_hash-$repo"; then
  log "installing ov2_ros (editable)"
  "${pip[@]}" install --quiet --no-deps --no-build-isolation -e "$repo" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$venv/bin/python" -c 'import ov2_ros' || { echo "setup: editable install of ov2_ros failed" >&2; exit 1; }
  mark_done package "$package_hash-$repo"
fi
