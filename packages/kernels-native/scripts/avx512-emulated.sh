#!/usr/bin/env bash
# Runs the sanitizer build of native_test (scripts/sanitize.sh) with the AVX-512 kernels emulated
# by SIMDe (needs Debian's libsimde-dev: apt-get install libsimde-dev), so a CPU without AVX-512
# checks them against the scalar kernels; the emulated masked loads and stores touch only their
# selected elements, so ASan reports a tail read past a buffer. Usage: scripts/avx512-emulated.sh [seed]
set -euo pipefail
if [ ! -f /usr/include/simde/x86/avx512.h ]; then
  echo "SIMDe headers not found: apt-get install libsimde-dev" >&2
  exit 2
fi
RYZ_BUILD_DIR=build-avx512-emulated RYZ_CMAKE_EXTRA=-DRYZ_EMULATE_AVX512=ON \
  exec bash "$(dirname "$0")/sanitize.sh" "$@"
