#!/usr/bin/env bash
# Opt-in interop check (not in CI): imagegen against a real LiteLLM proxy on 127.0.0.1, with mock answers.
#
#   scripts/interop_litellm.sh                 # LiteLLM in .litellm-venv (created on first run)
#   LITELLM_VENV=/opt/litellm scripts/interop_litellm.sh
#   LITELLM_SPEC='litellm[proxy]==1.108.11' scripts/interop_litellm.sh
#
# LiteLLM gets its own virtual environment: its dependency pins must not touch imagegen's .venv.
# The checks themselves are in scripts/interop_litellm.py; the exit code is the number of failed checks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${LITELLM_VENV:-$root/.litellm-venv}"
python="${IMAGEGEN_PYTHON:-$root/.venv/bin/python}"
if [ ! -x "$venv/bin/litellm" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "${LITELLM_SPEC:-litellm[proxy]}"
fi
exec "$python" "$root/scripts/interop_litellm.py" --litellm "$venv/bin/litellm" --imagegen "$(dirname "$python")/imagegen"
