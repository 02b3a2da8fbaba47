#!/usr/bin/env bash
# Sets up everything (tools/setup.sh, idempotent) and runs the whole test suite, ROS tests
# included (real rclpy, nodes in their own processes). Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/tools/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
