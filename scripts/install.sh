#!/usr/bin/env bash
# Install corpusforge with a llama-cpp-python built safely for this CPU.
#
# Why this exists: llama.cpp's default (-march=native) build turns on ggml's AMX
# matmul on CPUs that have AMX, and that kernel dies with SIGILL on quantized models
# (llama.cpp #20824, #28756). On such CPUs we build with GGML_NATIVE=OFF and switch on
# every other instruction set the CPU has, which runs at full speed. pip caches a built
# wheel by version only, not by CMAKE_ARGS, so we keep our own wheel cache keyed by
# version + flags and never let pip reuse a wheel built with other flags.
#
# Usage: bash scripts/install.sh [EXTRAS]     e.g. bash scripts/install.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1:-}

LLAMA_VERSION=$(grep -o 'llama-cpp-python==[0-9][0-9.]*' pyproject.toml | head -1 | cut -d= -f3)
[[ -n "$LLAMA_VERSION" ]] || { echo "pyproject.toml must pin llama-cpp-python==X.Y.Z"; exit 1; }

cmake_args=$(bash scripts/llama_cmake_args.sh)

installed=$("$PY" -c 'import llama_cpp, sys; sys.stdout.write(llama_cpp.__version__ + ("|amx" if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode() else ""))' 2>/dev/null || true)
want="$LLAMA_VERSION"
if [[ "$installed" == "$want" ]] || { [[ "$installed" == "$want|amx" ]] && [[ -z "$cmake_args" ]]; }; then
  echo "llama-cpp-python $LLAMA_VERSION already installed with the right build"
else
  key=$(printf '%s %s' "$LLAMA_VERSION" "$cmake_args" | sha256sum | cut -c1-16)
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/corpusforge/wheels/$key"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (a few minutes) with CMAKE_ARGS='$cmake_args'"
    mkdir -p "$wheels"
    CMAKE_ARGS="$cmake_args" "$PY" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
      -w "$wheels" "llama-cpp-python==$LLAMA_VERSION"
  fi
  "$PY" -m pip install --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl
fi

target="."
[[ -n "$EXTRAS" ]] && target=".[$EXTRAS]"
"$PY" -m pip install -e "$target"
