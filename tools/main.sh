#!/usr/bin/env bash
# Sets up everything (tools/setup.sh, idempotent) and runs the main job: a synthetic pick-and-place
# episode as an H.264 camera stream through the real ov2_node (embedded default model) over ROS 2,
# printing its traces and groundings next to the ground truth and what the node decoded, and
# writing the node's annotated answers as out/demo/annotated.mp4.
# Extra arguments go to `ov2 demo` (see `.venv/bin/ov2 demo --help`).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/tools/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/ov2" demo "$@"
