#!/usr/bin/env bash
# The reference tokenizer for `ov2 study fidelity` and `ov2 bench tokenizer --reference-cli`:
# codec-video-prep 0.2.5 (OV2's official offline tokenizer, MIT) in its own virtual environment
# (.venv-reference; it pins numpy<2 and opencv<4.12), plus ffprobe from Debian's ffmpeg.
# Not needed by the node or the tests.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$repo/.venv-reference
if ! command -v ffprobe >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg
fi
if [[ ! -x $venv/bin/codec-video-prep ]]; then
  python3.11 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check codec-video-prep==0.2.5 2>&1 \
    | grep -v '^WARNING: Location' || true
fi
"$venv/bin/codec-video-prep" --help >/dev/null
echo "$venv/bin/codec-video-prep"
