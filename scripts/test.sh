#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine with Swift and runs the whole test suite:
# every test on every backend and lock provider, then the stress and
# threading tests again under ThreadSanitizer.
#
# SWIFTEVENT_STRESS_SECONDS sets the length of each stress run (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh pkg-config liburcu-dev

# A crashing test should fail fast, not spend minutes symbolicating.
export SWIFT_BACKTRACE=enable=no

echo "== build"
swift build --build-tests
echo "== tests (all backends x providers)"
swift test --skip-build
echo "== stress and threading tests under ThreadSanitizer"
swift build --build-tests --sanitize=thread --scratch-path .build-tsan
swift test --skip-build --sanitize=thread --scratch-path .build-tsan \
    --filter 'SharedBaseStressTests|BufferEventStressTests|ThreadingTests|BufferThreadingTests'
