import ArgumentParser
import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventRPC
import Glibc

/// RPC round trips per second over one kept-alive connection: an
/// `RPCServer` and an `RPCClientPool` of one connection on one owned loop,
/// each call made when the previous reply arrives.
struct RPCBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc",
        abstract: "evrpc round trips per second over one kept-alive HTTP connection.",
        discussion: "Summary: `rpc calls=N round_trips_per_s=X` (median of -r runs).")

    @Option(name: .shortAndLong, help: "Calls per run.")
    var calls = 20_000

    @Option(name: .short, help: "Runs; the median is reported.")
    var r = 3

    struct Ping: Codable, Sendable {
        var sequence: UInt32
        var text: String
        enum CodingKeys: Int, CodingKey {
            case sequence = 1
            case text = 2
        }
    }

    func run() throws {
        var rates: [Double] = []
        for _ in 0..<r {
            let base = try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
            let http = HTTPServer(base: base)
            let server = RPCServer(http: http)
            server.register("Ping", request: Ping.self, reply: Ping.self) { request, reply in reply.send(request) }
            let port = try http.bind(try SocketAddress(ipv4: "127.0.0.1", port: 0)).port ?? 0
            let pool = RPCClientPool(base: base, host: "127.0.0.1", port: port)
            final class State: @unchecked Sendable { var done = 0; var failed = 0 }  // loop thread only
            let state = State()
            let total = calls
            @Sendable func next() {
                pool.call("Ping", Ping(sequence: UInt32(state.done), text: "ping"), reply: Ping.self) { result in
                    if case .failure = result { state.failed += 1 }
                    state.done += 1
                    if state.done == total || state.failed > 0 { try? base.loopBreak() } else { next() }
                }
            }
            let start = now()
            next()
            try base.dispatch()
            let seconds = (now() - start) / 1e6
            pool.free()
            http.free()
            _ = try? base.loop(.nonBlocking)
            guard state.failed == 0 else { throw BenchError("an RPC failed") }
            rates.append(Double(total) / seconds)
            print("run: \(formatted(Double(total) / seconds)) round trips/s")
        }
        var summary = Summary("rpc")
        summary.add("calls", calls)
        summary.add("round_trips_per_s", median(rates))
        try summary.emit(csv: nil)
    }
}
