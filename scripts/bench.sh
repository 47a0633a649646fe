#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine with Swift and runs the main job:
# `event-bench pipes` (libevent's test/bench.c method) on every backend and
# lock provider, interleaved with the same method against libevent 2.1.
# Arguments go to Benchmarks/compare-pipes (default: -n 1000 -a 100 -w 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh pkg-config liburcu-dev libevent-dev gcc
Benchmarks/compare-pipes "$@"
