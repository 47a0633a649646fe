import ArgumentParser
import CAllocationCounter
import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import Glibc

/// A hello-world HTTP server on one owned loop thread (the counterpart of
/// Benchmarks/http_evhttp.c and Benchmarks/NIOHello): 200 "hello\n" to
/// every request, kept alive. Measured with `event-bench http` or wrk.
struct HTTPServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http-serve",
        abstract: "Hello-world HTTP server on one loop thread, for load generators.",
        discussion: """
            Answers every request with 200 and `hello\\n` (Content-Type text/plain, Content-Length \
            and Date), keeping connections alive, until SECONDS pass or SIGTERM. With \
            --count-allocations it prints, at exit, the heap allocations per request served \
            (the malloc interposer counts the whole process, which only serves): summary \
            `http-serve requests=N allocations=A allocations_per_request=X`.
            """)

    @Option(name: .long, help: "Port on 127.0.0.1.")
    var port: UInt16 = 8080

    @Option(name: .long, help: "Seconds to serve.")
    var seconds = 60

    @Flag(name: .customLong("count-allocations"), help: "Count heap allocations per request.")
    var countAllocations = false

    @Flag(name: .customLong("async"), help: "Answer with an async handler (a task per request on the base) instead of a callback.")
    var asyncHandler = false

    func run() throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
        let server = HTTPServer(base: base)
        final class Count: @unchecked Sendable { var requests = 0 }  // loop thread only
        let count = Count()
        let body = Array("hello\n".utf8)
        let headers = HTTPHeaders([("Content-Type", "text/plain")])
        if asyncHandler {
            // The same reply from an async handler: a task per request whose
            // executor is the base, so it runs on this (the loop) thread.
            let response = HTTPServerResponse(.ok, headers: headers, body: body)
            server.setGenericHandler(async: { _ in
                count.requests += 1
                return response
            })
        } else {
            server.setGenericHandler { request in
                count.requests += 1
                request.respond(.ok, headers: headers, body: body)
            }
        }
        try server.bind(try SocketAddress(ipv4: "127.0.0.1", port: port))
        let stop = try Event(base: base, signal: SIGTERM) { event, _ in try? event.base.loopExit() }
        try stop.add()
        let interrupt = try Event(base: base, signal: SIGINT) { event, _ in try? event.base.loopExit() }
        try interrupt.add()
        try base.loopExit(after: .seconds(Int64(seconds)))
        print("http-serve: listening on 127.0.0.1:\(port)")
        fflush(nil)
        if countAllocations { se_allocations_set_counting(1) }
        let before = se_allocations_count()
        try base.dispatch()
        let allocations = se_allocations_count() - before
        se_allocations_set_counting(0)
        server.free()
        if countAllocations {
            var summary = Summary("http-serve")
            summary.add("requests", count.requests)
            summary.add("allocations", Int(allocations))
            summary.add("allocations_per_request", count.requests == 0 ? 0 : Double(allocations) / Double(count.requests))
            try summary.emit(csv: nil)
        }
    }
}

/// A keep-alive HTTP load generator on one loop (libevent's
/// bench_httpclient method): C connections, each sending its next GET as
/// soon as the previous response is complete, until N responses.
struct HTTPLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http",
        abstract: "Keep-alive HTTP load: C connections, N requests in total; prints requests/s.",
        discussion: """
            Summary: `http lib=client port=P connections=C requests=N requests_per_s=X errors=E`. \
            The generator runs on its own loop (SwiftEvent socket bufferevents) and counts a \
            response once its head and Content-Length body are in.
            """)

    @Option(name: .long, help: "Port on 127.0.0.1.")
    var port: UInt16 = 8080

    @Option(name: .shortAndLong, help: "Connections.")
    var connections = 50

    @Option(name: .shortAndLong, help: "Requests in total.")
    var requests = 200_000

    @Option(name: .long, help: "Path requested.")
    var path = "/"

    @OptionGroup var common: CommonOptions

    func run() throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
        final class State: @unchecked Sendable {  // loop thread only
            var sent = 0
            var done = 0
            var errors = 0
            var open = 0
        }
        let state = State()
        let total = requests
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        var clients: [SocketBufferEvent] = []
        let start = now()
        for _ in 0..<connections {
            let client = try SocketBufferEvent(base: base, options: [.closeOnFree])
            final class Parse: @unchecked Sendable { var bodyLeft = -1 }  // loop thread only
            let parse = Parse()
            client.setCallbacks(
                read: { bev in
                    let input = bev.input
                    while true {
                        if parse.bodyLeft < 0 {
                            guard let end = input.search(Self.headEnd) else { return }
                            // In place: no copy of the head, no strings.
                            let head = (try? input.pullUp(end.offset)) ?? nil
                            parse.bodyLeft = head.map(Self.contentLength) ?? 0
                            try? input.drain(end.offset + 4)
                        }
                        guard input.count >= parse.bodyLeft else { return }
                        try? input.drain(parse.bodyLeft)
                        parse.bodyLeft = -1
                        state.done += 1
                        if state.done >= total {
                            try? bev.base.loopBreak()
                            return
                        }
                        if state.sent < total {
                            state.sent += 1
                            try? bev.write(request)
                        }
                    }
                },
                write: nil,
                event: { bev, what, _ in
                    if what.contains(.connected) { return }
                    state.errors += 1
                    state.open -= 1
                    bev.free()
                    if state.open == 0 { try? bev.base.loopBreak() }
                })
            try client.enable(.read)
            try client.connect(to: address)
            state.open += 1
            if state.sent < total {
                state.sent += 1
                try client.write(request)
            }
            clients.append(client)
        }
        try base.dispatch()
        let seconds = (now() - start) / 1e6
        for client in clients { client.free() }
        _ = try? base.loop(.nonBlocking)
        var summary = Summary("http")
        summary.add("lib", "client")
        summary.add("port", Int(port))
        summary.add("connections", connections)
        summary.add("requests", state.done)
        summary.add("requests_per_s", Double(state.done) / seconds)
        summary.add("errors", state.errors)
        try summary.emit(csv: common.csv)
    }

    static let headEnd: [UInt8] = [13, 10, 13, 10]
    static let lengthName = Array("content-length:".utf8)

    /// Content-Length in a response head (0 when absent), read byte by byte.
    static func contentLength(_ head: UnsafeRawBufferPointer) -> Int {
        let name = lengthName
        var lineStart = 0
        while lineStart < head.count {
            var lineEnd = lineStart
            while lineEnd < head.count && head[lineEnd] != 13 { lineEnd += 1 }
            if lineEnd - lineStart > name.count,
                (0..<name.count).allSatisfy({ head[lineStart + $0] | 0x20 == name[$0] | 0x20 })
            {
                var value = 0
                for index in (lineStart + name.count)..<lineEnd {
                    let byte = head[index]
                    if byte >= 48 && byte <= 57 { value = value * 10 + Int(byte - 48) }
                }
                return value
            }
            lineStart = lineEnd + 2
        }
        return 0
    }
}
