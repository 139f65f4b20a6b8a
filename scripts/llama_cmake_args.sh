#!/usr/bin/env bash
# Print the CMake flags that build llama.cpp safely for this CPU (used by install.sh and
# build_llama_tools.sh so both builds match).
#
# On CPUs with AMX, llama.cpp's default -march=native build turns on ggml's AMX matmul, which
# dies with SIGILL on quantized models (llama.cpp #20824, #28756). There we switch native off
# and name every other instruction set the CPU has, which runs at full speed. Elsewhere the
# default build is fine and nothing is printed. A CMAKE_ARGS already set by the user wins.
set -euo pipefail
if [[ -n "${CMAKE_ARGS:-}" ]]; then
  printf '%s\n' "$CMAKE_ARGS"
  exit 0
fi
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }
if has amx_int8 || has amx_tile; then
  args="-DGGML_NATIVE=OFF"
  for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI \
              avx512f:AVX512 avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx512vbmi:AVX512_VBMI; do
    has "${pair%%:*}" && args+=" -DGGML_${pair##*:}=ON"
  done
  printf '%s\n' "$args"
fi
