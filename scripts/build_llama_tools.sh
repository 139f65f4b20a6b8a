#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` and `llama-batched-bench` from the source vendored in
# the pinned llama-cpp-python sdist, with the same CPU flags as our install, so that
# scripts/bench.py compares the engine against llama.cpp's server and its batched roof on
# the same kernels. Output: bench/scratch/{llama-server,llama-batched-bench} (ignored by git).
# Takes several minutes on 2 cores; a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VERSION=$(grep -o 'llama-cpp-python==[0-9][0-9.]*' pyproject.toml | head -1 | cut -d= -f3)
scratch=bench/scratch
src="$scratch/llama_cpp_python-$VERSION"
mkdir -p "$scratch"
if [[ ! -d "$src/vendor/llama.cpp" ]]; then
  [[ -f "$scratch/llama_cpp_python-$VERSION.tar.gz" ]] ||
    "$PY" -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$scratch" -q
  tar -xzf "$scratch/llama_cpp_python-$VERSION.tar.gz" -C "$scratch"
fi
# The server needs neither HTTPS (it only listens on 127.0.0.1 here) nor the web UI (whose
# prebuilt download would need the network; without it the build only warns).
# shellcheck disable=SC2046
cmake -S "$src/vendor/llama.cpp" -B "$scratch/llama-build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DBUILD_SHARED_LIBS=OFF $(bash scripts/llama_cmake_args.sh) >/dev/null
cmake --build "$scratch/llama-build" --target llama-server llama-batched-bench -j "${JOBS:-$(nproc)}" >/dev/null
for tool in llama-server llama-batched-bench; do
  install -m 0755 "$scratch/llama-build/bin/$tool" "$scratch/$tool"  # executable even over a stale copy
done
echo "built $scratch/llama-server and $scratch/llama-batched-bench (llama-cpp-python $VERSION's llama.cpp)"
