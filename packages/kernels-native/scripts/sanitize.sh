#!/usr/bin/env bash
# Builds native/tests/native_test.cpp with the kernels under AddressSanitizer + UBSan (and
# -Werror) in build-sanitize/, then runs it. Usage: scripts/sanitize.sh [seed]
# RYZ_BUILD_DIR and RYZ_CMAKE_EXTRA (extra -D options) let other runs reuse it
# (scripts/avx512-emulated.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${RYZ_BUILD_DIR:-build-sanitize}
# shellcheck disable=SC2086 # RYZ_CMAKE_EXTRA is a list of options
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRYZ_NATIVE_TESTS=ON -DRYZ_SANITIZE=ON -DRYZ_WERROR=ON ${RYZ_CMAKE_EXTRA:-} >/dev/null
cmake --build "$BUILD_DIR" --parallel 2 --target native_test
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
"./$BUILD_DIR/native_test" "$@"
