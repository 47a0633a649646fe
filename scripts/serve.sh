#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine with Swift and runs the main job:
# event-httpd serving Examples/site on http://127.0.0.1:8080 (Ctrl-C stops it).
# Arguments go to event-httpd (e.g. --port 9000 --threads 2 --mode shared).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh pkg-config liburcu-dev libssl-dev
swift build -c release --product event-httpd
exec .build/release/event-httpd --root Examples/site "$@"
