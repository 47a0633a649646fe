import ArgumentParser
import EventBuffers
import EventCore
import EventSSL
import Glibc

/// Moves N MB through M echo connections made of bufferevents: over TCP on
/// 127.0.0.1 (a listener and an echoing server bufferevent per connection)
/// or over bufferevent pairs; prints MB/s. Benchmarks/throughput_libevent.c
/// does the same with libevent.
struct Throughput: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bufferevent echo throughput over TCP or pairs; prints MB/s.",
        discussion: """
            M client bufferevents each send N/M MB in chunks (at most four queued, refilled from the \
            write callback) to an echo (a listener and server bufferevents on 127.0.0.1, or the other \
            end of a bufferevent pair) and read the echo back. --tls puts TLS on every connection \
            (TLS bufferevents over the sockets, TLS filters over the pairs; a self-signed P-256 \
            certificate made at start, verified by the clients). Summary: `throughput lib=swiftevent \
            mode=M backend=B locking=L connections=C megabytes=N mb_per_s=X` (median of -r runs; \
            mode socket, pair, socket-tls or pair-tls).
            """)

    @Option(name: .shortAndLong, help: "Connections.")
    var connections = 4

    @Option(name: .long, help: "Megabytes sent in total (each echoed back).")
    var megabytes = 64

    @Option(name: .long, help: "Bytes per write.")
    var chunk = 16384

    @Option(name: .long, help: "Transport: socket (TCP on 127.0.0.1) or pair.")
    var mode = "socket"

    @Flag(name: .long, help: "TLS on every connection (TLS bufferevents, or TLS filters over pairs).")
    var tls = false

    @OptionGroup var common: CommonOptions

    @Option(name: .short, help: "Repetitions; the median is reported.")
    var r = 3

    func validate() throws {
        guard connections >= 1, megabytes >= 1, chunk >= 1, r >= 1 else {
            throw ValidationError("connections, megabytes, chunk and -r must be positive")
        }
        guard mode == "socket" || mode == "pair" else { throw ValidationError("--mode is socket or pair") }
    }

    /// Server and client TLS contexts (with --tls).
    struct Contexts {
        let server: SSLContext
        let client: SSLContext
    }

    func run() throws {
        let configuration = try common.configuration()
        var contexts: Contexts?
        if tls {
            let (certificate, key) = try SSLContext.selfSignedCertificate()
            contexts = Contexts(
                server: try SSLContext(.server(certificateChain: .text(certificate), privateKey: .text(key))),
                client: try SSLContext(.client(trustRoots: [.text(certificate)])))
        }
        var rates: [Double] = []
        var name = ("", "")
        for round in 0..<r {
            let base = try EventBase(configuration)
            name = (base.method, base.lockProvider.name)
            let seconds = try mode == "pair" ? runPairs(base, contexts) : runSockets(base, contexts)
            let rate = Double(megabytes) / seconds
            rates.append(rate)
            print("round \(round): \(formatted(seconds * 1e6)) us, \(formatted(rate)) MB/s")
            try base.shutdown()
        }
        var summary = Summary("throughput")
        summary.add("lib", "swiftevent")
        summary.add("mode", tls ? mode + "-tls" : mode)
        summary.add("backend", name.0)
        summary.add("locking", name.1)
        summary.add("connections", connections)
        summary.add("megabytes", megabytes)
        summary.add("mb_per_s", median(rates))
        try summary.emit(csv: common.csv)
    }

    /// One client's progress: bytes still to send and echoed bytes received.
    final class Client: @unchecked Sendable {
        // Touched only by the loop thread (one base, one loop).
        var toSend: Int
        var received = 0
        let expected: Int
        init(bytes: Int) {
            toSend = bytes
            expected = bytes
        }
    }

    final class Progress: @unchecked Sendable {
        // Touched only by the loop thread.
        var finished = 0
        var failure: String?
    }

    /// Keeps at most `window` bytes queued in the output.
    static func refill(_ bev: BufferEvent, _ client: Client, chunk: [UInt8]) {
        let window = 4 * chunk.count
        while client.toSend > 0 && bev.output.count < window {
            let n = min(chunk.count, client.toSend)
            try? bev.write(chunk.prefix(n))
            client.toSend -= n
        }
    }

    func perClientBytes() -> Int { megabytes * 1_048_576 / connections }

    func clientCallbacks(
        _ bev: BufferEvent, _ client: Client, _ progress: Progress, _ payload: [UInt8]
    ) {
        bev.setWatermark(.write, low: payload.count, high: 0)
        bev.setCallbacks(
            read: { bev in
                let n = bev.input.count
                try? bev.input.drain(n)
                client.received += n
                if client.received >= client.expected {
                    progress.finished += 1
                    if progress.finished == connections { try? bev.base.loopBreak() }
                }
            },
            write: { bev in Self.refill(bev, client, chunk: payload) },
            event: { bev, what, error in
                if what.contains(.connected) { return }
                progress.failure = "client: \(what) errno \(error)"
                try? bev.base.loopBreak()
            })
    }

    func runSockets(_ base: EventBase, _ contexts: Contexts?) throws -> Double {
        let payload = [UInt8](repeating: 0x61, count: chunk)
        let servers = ServerList()
        let listener = try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) {
            listener, fd, _ in
            let made: BufferEvent?
            if let contexts {
                made = try? SSLBufferEvent(base: listener.base, socket: fd, context: contexts.server, options: [.closeOnFree])
            } else {
                made = try? SocketBufferEvent(base: listener.base, fd: fd, options: [.closeOnFree])
            }
            guard let bev = made else {
                close(fd)
                return
            }
            bev.setCallbacks(
                read: { bev in try? bev.output.add(buffer: bev.input) }, write: nil,
                event: { bev, what, _ in if what != .connected { bev.free() } })
            try? bev.enable(.read)
            servers.items.append(bev)
        }
        guard let port = listener.localAddress?.port else { throw BenchError("listener has no port") }
        let progress = Progress()
        var clients: [BufferEvent] = []
        let start = now()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        for _ in 0..<connections {
            let bev: BufferEvent
            if let contexts {
                let tlsClient = try SSLBufferEvent(base: base, context: contexts.client, serverName: "127.0.0.1", options: [.closeOnFree])
                try tlsClient.connect(to: address)
                bev = tlsClient
            } else {
                let socketClient = try SocketBufferEvent(base: base, options: [.closeOnFree])
                try socketClient.connect(to: address)
                bev = socketClient
            }
            let client = Client(bytes: perClientBytes())
            clientCallbacks(bev, client, progress, payload)
            try bev.enable(.read)
            Self.refill(bev, client, chunk: payload)
            clients.append(bev)
        }
        try base.loop()
        let elapsed = (now() - start) / 1e6
        for bev in clients { bev.free() }
        for bev in servers.items { bev.free() }
        listener.free()
        try base.loop(.nonBlocking)
        if let failure = progress.failure { throw BenchError(failure) }
        guard progress.finished == connections else { throw BenchError("only \(progress.finished) connections finished") }
        return elapsed
    }

    func runPairs(_ base: EventBase, _ contexts: Contexts?) throws -> Double {
        let payload = [UInt8](repeating: 0x61, count: chunk)
        let progress = Progress()
        var ends: [BufferEvent] = []
        let start = now()
        for _ in 0..<connections {
            let (plainNear, plainFar) = try PairBufferEvent.makePair(base: base)
            var near: BufferEvent = plainNear
            var far: BufferEvent = plainFar
            if let contexts {
                far = try SSLBufferEvent(filtering: plainFar, context: contexts.server, options: [.closeOnFree])
                near = try SSLBufferEvent(filtering: plainNear, context: contexts.client, serverName: "127.0.0.1", options: [.closeOnFree])
            }
            far.setCallbacks(read: { bev in try? bev.output.add(buffer: bev.input) }, write: nil, event: nil)
            try far.enable(.read)
            let client = Client(bytes: perClientBytes())
            clientCallbacks(near, client, progress, payload)
            try near.enable(.read)
            Self.refill(near, client, chunk: payload)
            ends += [near, far]
        }
        try base.loop()
        let elapsed = (now() - start) / 1e6
        for bev in ends { bev.free() }
        try base.loop(.nonBlocking)
        if let failure = progress.failure { throw BenchError(failure) }
        guard progress.finished == connections else { throw BenchError("only \(progress.finished) pairs finished") }
        return elapsed
    }
}

/// The server side's bufferevents (touched only by the loop thread).
final class ServerList: @unchecked Sendable {
    var items: [BufferEvent] = []
}
