#!/usr/bin/env bash
# Build the benchmarks in Release mode and run each one; they print their
# numbers and the ratios against the tools they are compared with.
# Usage: scripts/run-benchmarks.sh [NAME...]   (default: every bench_* target)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${BUILD_DIR:-build-release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DIMAROTD_BUILD_BENCHMARKS=ON >/dev/null
if [ $# -gt 0 ]; then
  benches=("$@")
else
  mapfile -t benches < <(sed -n 's/^add_executable(\(bench_[a-z_]*\).*/\1/p' tests/bench/CMakeLists.txt)
fi
cmake --build "$build" -j "$(nproc)" --target "${benches[@]}" imarot-rot-tpm2
for bench in "${benches[@]}"; do
  echo "== $bench"
  "$build/tests/bench/$bench"
done
