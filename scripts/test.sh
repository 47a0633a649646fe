#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine with Swift and runs the whole test suite:
# every test on every backend and lock provider, then the stress and
# threading tests again under ThreadSanitizer, then every benchmark briefly
# (a smoke run: each must run and print its summary; no timing is asserted)
# and the steady-state allocation checks (events, timers, activations, actor
# hops, and kept-alive HTTP requests).
#
# SWIFTEVENT_STRESS_SECONDS sets the length of each stress run (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-dependencies.sh pkg-config liburcu-dev libevent-dev libev-dev libssl-dev openssl dnsmasq-base dnsutils curl wrk gcc python3

# A crashing test should fail fast, not spend minutes symbolicating.
export SWIFT_BACKTRACE=enable=no

echo "== build"
swift build --build-tests
# The Swift concurrency tests run on their own: the other tests block
# threads of the cooperative pool (as wide as the machine: two here) for
# seconds at a time, which would starve the async tests' tasks.
echo "== tests (all backends x providers)"
swift test --skip-build --skip EventAsyncTests
echo "== Swift concurrency tests"
swift test --skip-build --filter EventAsyncTests
echo "== stress and threading tests under ThreadSanitizer"
swift build --build-tests --sanitize=thread --scratch-path .build-tsan
swift test --skip-build --sanitize=thread --scratch-path .build-tsan \
    --filter 'SharedBaseStressTests|BufferEventStressTests|ThreadingTests|BufferThreadingTests|SSLFlowTests|DNSStressTests|HTTPStressTests|HTTPRequestReuseTests'
echo "== Swift concurrency tests under ThreadSanitizer"
swift test --skip-build --sanitize=thread --scratch-path .build-tsan --filter EventAsyncTests
echo "== benchmarks, briefly (smoke: every program runs and prints its summary)"
Benchmarks/compare --quick
bench=.build/release/event-bench
plot=$(mktemp --suffix=.svg)
"$bench" pipes --sweep -r 2 -w 10 --quiet --plot "$plot"
grep -q "<svg" "$plot"
rm -f "$plot"
"$bench" throughput --megabytes 4 -r 1
"$bench" throughput --megabytes 4 -r 1 --mode pair
"$bench" throughput --megabytes 4 -r 1 --tls
"$bench" throughput --megabytes 4 -r 1 --mode pair --tls
echo "== the TLS echo example (server and client in one process)"
swift run -c release TLSEchoExample
echo "== event-dns: serve a hosts file, look names up in it, measure lookups/s (smoke)"
swift build -c release --product event-dns
dns=.build/release/event-dns
hosts=$(mktemp)
printf '192.0.2.10 web.example.test\n2001:db8::10 web.example.test\n' > "$hosts"
"$dns" serve --port 15399 --hosts "$hosts" &
server=$!
sleep 1
"$dns" lookup web.example.test --nameserver 127.0.0.1:15399
"$dns" lookup web.example.test --type AAAA --tcp --nameserver 127.0.0.1:15399
if "$dns" lookup missing.example.test --nameserver 127.0.0.1:15399; then echo "NXDOMAIN not reported"; exit 1; fi
"$dns" bench web.example.test --nameserver 127.0.0.1:15399 --count 2000
kill "$server"
rm -f "$hosts"
echo "== event-httpd serving Examples/site (smoke, with curl)"
swift build -c release --product event-httpd
.build/release/event-httpd --root Examples/site --port 18099 --quiet &
httpd=$!
sleep 1
curl -sSf http://127.0.0.1:18099/ | grep -q "Served by event-httpd"
curl -sSf -r 0-9 http://127.0.0.1:18099/docs/notes.txt | grep -q "^event-http"
kill "$httpd"
echo "== HTTP hello-world against evhttp, briefly (smoke: wrk and event-bench http run)"
Benchmarks/compare-http --quick --no-nio
echo "== the HTTP request parser under libFuzzer, briefly"
swiftc -sanitize=fuzzer,address -parse-as-library -O Fuzz/http_parser_fuzz.swift \
    Sources/Protocols/HTTP/HTTPParser.swift Sources/Protocols/HTTP/HTTPHeaders.swift -o .build/http-fuzz
corpus=$(mktemp -d)
cp Fuzz/http-corpus/* "$corpus"/
.build/http-fuzz -max_total_time=30 -print_final_stats=1 "$corpus" 2>&1 | tail -3
rm -rf "$corpus"
echo "== RPC round trips over one kept-alive connection (smoke)"
"$bench" rpc -c 2000 -r 1
echo "== the evtag decoder under libFuzzer, briefly"
swiftc -sanitize=fuzzer,address -parse-as-library -O Fuzz/evtag_fuzz.swift \
    Sources/Protocols/RPC/EVTag.swift -o .build/evtag-fuzz
corpus=$(mktemp -d)
cp Fuzz/evtag-corpus/* "$corpus"/
.build/evtag-fuzz -max_total_time=20 -print_final_stats=1 "$corpus" 2>&1 | tail -3
rm -rf "$corpus"
echo "== the DNS packet parser under libFuzzer, briefly"
swiftc -sanitize=fuzzer,address -parse-as-library -O Fuzz/dns_parser_fuzz.swift \
    Sources/Protocols/DNS/DNSMessage.swift -o .build/dns-fuzz
corpus=$(mktemp -d)
cp Fuzz/corpus/* "$corpus"/
.build/dns-fuzz -max_total_time=30 -print_final_stats=1 "$corpus" 2>&1 | tail -3
rm -rf "$corpus"
echo "== steady state: no allocation per dispatched event, timer re-arm or activation"
"$bench" allocations -i 20000 --check
echo "== steady state: no allocation per kept-alive HTTP request (hello world, 50 connections)"
summary=$(mktemp)
"$bench" http-serve --port 18097 --seconds 120 --count-allocations > "$summary" &
server=$!
sleep 1
"$bench" http --port 18097 -c 50 -r 50000
kill -TERM "$server"
wait "$server"
tail -1 "$summary"
tail -1 "$summary" | awk -F'allocations_per_request=' '{ if ($2 == "" || $2 + 0 > 0.1) { print "FAIL: allocations per request: " $2; exit 1 } }'
rm -f "$summary"
