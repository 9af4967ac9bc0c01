#!/usr/bin/env bash
# Build imarotd and run the whole test suite: unit, integration (swtpm,
# fanotify, dbus-daemon) and a bounded fuzzing run of every fuzz target.
# Installs the Debian packages it needs first when some are missing.
#
# Usage: scripts/run-tests.sh [--quick]
#   --quick   skip the fuzzing run
# Environment: IMAROTD_FUZZ_SECONDS (default 20) per fuzz target,
#              BUILD_DIR (default build), FUZZ_BUILD_DIR (default build-fuzz).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "run-tests.sh: unknown argument '$arg'; expected --quick" >&2; exit 2 ;;
  esac
done

if ! missing=$(scripts/install-deps.sh --check); then
  echo "run-tests.sh: $missing; installing them"
  if [ "$(id -u)" -eq 0 ]; then
    scripts/install-deps.sh
  else
    sudo scripts/install-deps.sh
  fi
fi

jobs=$(nproc)
build=${BUILD_DIR:-build}
# The prefix /usr registers the .deb test and the guest test of the installed
# service, which install the package the build makes.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMAROTD_WERROR=ON -DCMAKE_INSTALL_PREFIX=/usr
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"

if [ "$quick" -eq 0 ]; then
  fuzz_build=${FUZZ_BUILD_DIR:-build-fuzz}
  cmake -S . -B "$fuzz_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DIMAROTD_BUILD_FUZZERS=ON -DIMAROTD_BUILD_BENCHMARKS=OFF \
    -DIMAROTD_FUZZ_SECONDS="${IMAROTD_FUZZ_SECONDS:-20}"
  fuzz_targets=$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')
  # shellcheck disable=SC2086
  cmake --build "$fuzz_build" -j "$jobs" --target $fuzz_targets
  ctest --test-dir "$fuzz_build" --output-on-failure -L fuzz -j "$jobs"
fi
