#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine with Swift and runs the main job:
# Benchmarks/compare, every event-bench case (pipes, flat, cascade, threads,
# lookups, timers, memory) interleaved with the same method in C against
# libevent 2.1 and libev 4, printing medians and our/their ratios.
# Arguments go to Benchmarks/compare (default: -k 11; --quick for a smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh pkg-config liburcu-dev libevent-dev libev-dev libssl-dev gcc python3
Benchmarks/compare "$@"
