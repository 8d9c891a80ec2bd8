#!/usr/bin/env bash
# Runs native/tests/native_test.cpp with the AVX-512 kernels emulated by SIMDe (needs Debian's
# libsimde-dev: apt-get install libsimde-dev), so a CPU without AVX-512 checks them against the
# scalar kernels; with ASan/UBSan, the emulated masked loads and stores touch only their selected
# elements, so a tail read past a buffer is reported. Usage: scripts/avx512-emulated.sh [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/include/simde/x86/avx512.h ]; then
  echo "SIMDe headers not found: apt-get install libsimde-dev" >&2
  exit 2
fi
BUILD_DIR=build-avx512-emulated
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRYZ_NATIVE_TESTS=ON -DRYZ_SANITIZE=ON -DRYZ_EMULATE_AVX512=ON >/dev/null
cmake --build "$BUILD_DIR" --parallel 2 --target native_test
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
"./$BUILD_DIR/native_test" "$@"
