#!/usr/bin/env bash
# Build llama.cpp's own `llama-batched-bench` from the source vendored in the pinned
# llama-cpp-python sdist (from PyPI), with the same CPU flags as our install, so that
# scripts/bench.py can compare the engine against llama.cpp at the same parallel count.
# Output: bench/scratch/llama-batched-bench (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VERSION=$(grep -o 'llama-cpp-python==[0-9][0-9.]*' pyproject.toml | head -1 | cut -d= -f3)
scratch=bench/scratch
src="$scratch/llama_cpp_python-$VERSION"
mkdir -p "$scratch"
if [[ ! -d "$src/vendor/llama.cpp" ]]; then
  "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$scratch" -q
  tar -xzf "$scratch/llama_cpp_python-$VERSION.tar.gz" -C "$scratch"
fi
# shellcheck disable=SC2046
cmake -S "$src/vendor/llama.cpp" -B "$scratch/llama-build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF $(bash scripts/llama_cmake_args.sh) >/dev/null
cmake --build "$scratch/llama-build" --target llama-batched-bench -j "$(nproc)" >/dev/null
cp "$scratch/llama-build/bin/llama-batched-bench" "$scratch/llama-batched-bench"
echo "built $scratch/llama-batched-bench"
