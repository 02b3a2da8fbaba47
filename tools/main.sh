#!/usr/bin/env bash
# Sets up everything (tools/setup.sh, idempotent) and runs the main job: a synthetic H.264
# camera stream through the real ov2_node over ROS 2, reporting what the node decoded.
# Extra arguments go to `ov2 demo` (see `.venv/bin/ov2 demo --help`).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/tools/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/ov2" demo "$@"
