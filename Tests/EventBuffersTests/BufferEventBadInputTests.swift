import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

@Suite("BufferEvent with bad input: vanished peers, resets, odd descriptors, use after free")
struct BufferEventBadInputTests {
    /// Writing to a peer that closed reports `[.writing, .error]` with EPIPE
    /// or ECONNRESET for a TCP socket, a Unix socket and a pipe, and SIGPIPE
    /// (left at its default action, in a child process) never kills the process.
    @Test func writingToAVanishedPeerIsAnErrorNotSIGPIPE() async {
        await #expect(processExitsWith: .success) {
            signal(SIGPIPE, SIG_DFL)
            if let failure = VanishedPeerScenario.run() {
                VanishedPeerScenario.fail(failure)
            }
        }
    }

    /// A reset by the peer (SO_LINGER {1, 0}, then close) is an error with
    /// ECONNRESET, and reading stops.
    @Test func connectionResetReportsECONNRESET() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.enable(.read)
        BEKit.setLingerReset(peer)
        close(peer)
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        try BEKit.spin(base, for: .milliseconds(30))
        #expect(recorder.events.count == 1, "\(recorder.entries)")
        let (what, error) = try #require(recorder.events.first)
        #expect(what == [.reading, .error])
        #expect(error == ECONNRESET)
        #expect(!bev.enabled.contains(.read))
        BEKit.finish(base, [bev])
    }

    /// Zero-length writes change nothing and call nothing.
    @Test func zeroLengthWritesDoNothing() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer { close(peer) }
        let bev = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.write([UInt8]())
        try bev.write("")
        try bev.write(buffer: EventBuffer())
        try bev.write([UInt8]().lazy.map { $0 })
        #expect(bev.output.isEmpty)
        try BEKit.spin(base, for: .milliseconds(50))
        #expect(recorder.entries.isEmpty, "\(recorder.entries)")
        #expect(BEKit.pendingBytes(peer) == 0)
        try bev.write("x")
        #expect(try BEKit.run(base) { recorder.writes == 1 })
        #expect(BEKit.receive(peer, count: 1) == Array("x".utf8))
        BEKit.finish(base, [bev])
    }

    /// One 32 MiB write arrives intact, checked as it arrives.
    @Test func aHugeWriteArrivesIntact() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        let size = 32 << 20
        let data = BEKit.largePattern(size)
        let writer = try SocketBufferEvent(base: base, fd: local, options: [.closeOnFree])
        let reader = try SocketBufferEvent(base: base, fd: peer, options: [.closeOnFree])
        let offset = BEVar(0)
        let mismatchAt = BEVar<Int?>(nil)
        reader.setCallbacks(
            read: { bev in
                while !bev.input.isEmpty {
                    let chunk = (try? bev.read(upTo: 1 << 20)) ?? []
                    if mismatchAt.value == nil && !BEKit.matches(chunk, data, at: offset.value) {
                        mismatchAt.value = offset.value
                    }
                    offset.value += chunk.count
                }
            }, write: nil, event: nil)
        try reader.enable(.read)
        let recorder = BERecorder()
        recorder.attach(to: writer)
        try writer.write(data)
        #expect(writer.output.count == size)
        #expect(try BEKit.run(base, timeout: .seconds(4)) { offset.value >= size }, "\(offset.value) of \(size) bytes")
        #expect(offset.value == size)
        #expect(mismatchAt.value == nil, "bytes differ in the chunk at \(mismatchAt.value ?? -1)")
        #expect(writer.output.isEmpty)
        #expect(recorder.entries == [.write(0)])
        BEKit.finish(base, [writer, reader])
    }

    /// A bufferevent on a descriptor that is not open cannot be made.
    @Test func aDescriptorThatIsNotOpenThrows() throws {
        let base = try BEKit.ownedBase()
        let fd = BEKit.unusedDescriptor()
        #expect(throws: EventError.badFileDescriptor(fd: fd, call: "SocketBufferEvent.init")) {
            _ = try SocketBufferEvent(base: base, fd: fd)
        }
        BEKit.finish(base)
    }

    /// Pipes are not sockets, but a bufferevent reads from and writes to them
    /// all the same, and sees EOF when the writing side goes away.
    @Test func pipesReadAndWrite() throws {
        let base = try BEKit.ownedBase()
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let reading = try SocketBufferEvent(base: base, fd: fds[0], options: [.closeOnFree])
        let writing = try SocketBufferEvent(base: base, fd: fds[1], options: [.closeOnFree])
        let recorder = BERecorder()
        recorder.attach(to: reading)
        let writes = BERecorder()
        writes.attach(to: writing)
        try reading.enable(.read)
        let data = BEKit.pattern(300_000, seed: 21)
        try writing.write(data)
        #expect(try BEKit.run(base) { recorder.received.count == data.count && writes.writes > 0 })
        #expect(BEKit.same(recorder.received, data))
        #expect(writes.entries == [.write(0)])
        writing.free()
        #expect(try BEKit.run(base) { !recorder.events.isEmpty })
        #expect(recorder.events.map(\.0) == [[.reading, .endOfFile]])
        BEKit.finish(base, [reading])
    }

    /// A regular file cannot be watched by epoll: enabling reading says so
    /// with an error instead of crashing, and the bufferevent can still be
    /// written to (output is written once the callback that added it
    /// returns, which needs no readiness watch: the bytes land in the file)
    /// and freed.
    @Test func aRegularFileIsRefusedWithoutACrash() throws {
        let base = try BEKit.ownedBase()
        var template = Array("/tmp/swev-be-file-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer {
            close(fd)
            unlink(path)
        }
        let bev = try SocketBufferEvent(base: base, fd: fd)
        #expect(throws: EventError.self) { try bev.enable(.read) }
        try bev.write("kept")
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(bev.output.count == 0)
        var written = [UInt8](repeating: 0, count: 8)
        #expect(pread(fd, &written, 8, 0) == 4)
        #expect(Array(written.prefix(4)) == Array("kept".utf8))
        bev.free()
        #expect(BEKit.isOpen(fd, as: BEKit.identity(fd)))
        BEKit.finish(base)
    }

    /// After free: enable and connect throw, no callback runs, free again is harmless.
    @Test func useAfterFreeIsRefused() throws {
        let base = try BEKit.ownedBase()
        let (local, peer) = try BEKit.tcpPair()
        defer {
            close(local)
            close(peer)
        }
        let bev = try SocketBufferEvent(base: base, fd: local)
        let recorder = BERecorder()
        recorder.attach(to: bev)
        try bev.enable(.read)
        bev.free()
        #expect(bev.isFree)
        #expect(throws: EventError.self) { try bev.enable(.read) }
        #expect(throws: EventError.self) { try bev.connect(to: try BEKit.loopback4(port: 9)) }
        try BEKit.sendAll(peer, "ignored")
        try BEKit.spin(base, for: .milliseconds(50))
        #expect(recorder.entries.isEmpty, "\(recorder.entries)")
        #expect(bev.enabled.isEmpty)
        bev.free()
        #expect(bev.isFree)

        let (a, b) = try PairBufferEvent.makePair(base: base)
        a.free()
        #expect(throws: EventError.self) { try a.enable(.read) }
        BEKit.finish(base, [b])
    }
}

/// The body of the SIGPIPE exit test; returns what went wrong, or nil.
enum VanishedPeerScenario {
    static func fail(_ reason: String) -> Never {
        Issue.record("vanished-peer scenario failed: \(reason)")
        exit(1)
    }

    static func run() -> String? {
        do {
            for kind in ["tcp", "unix", "pipe"] {
                if let failure = try writeAfterPeerClosed(kind) { return "\(kind): \(failure)" }
            }
            return nil
        } catch {
            return "threw \(error)"
        }
    }

    private static func writeAfterPeerClosed(_ kind: String) throws -> String? {
        let base = try BEKit.ownedBase()
        var fds: [Int32] = [-1, -1]
        switch kind {
        case "tcp":
            let (local, peer) = try BEKit.tcpPair()
            fds = [local, peer]
        case "unix":
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { return "socketpair: errno \(errno)" }
        default:
            guard pipe(&fds) == 0 else { return "pipe: errno \(errno)" }
            fds.swapAt(0, 1)
        }
        // fds[0] is ours (it writes), fds[1] the peer that goes away.
        close(fds[1])
        let bev = try SocketBufferEvent(base: base, fd: fds[0], options: [.closeOnFree])
        let events = BEVar<[(BufferEvent.What, Int32)]>([])
        bev.setCallbacks(read: nil, write: nil, event: { _, what, error in events.value.append((what, error)) })
        for _ in 0..<4 { try bev.write(BEKit.pattern(64 * 1024, seed: 1)) }
        let reported = try BEKit.run(base, timeout: .seconds(3)) { !events.value.isEmpty }
        try BEKit.spin(base, for: .milliseconds(20))
        defer { BEKit.finish(base, [bev]) }
        guard reported else { return "no error reported; \(bev.output.count) bytes still queued" }
        guard events.value.count == 1 else { return "expected one event, got \(events.value)" }
        let (what, error) = events.value[0]
        guard what == [.writing, .error] else { return "expected writing|error, got \(what)" }
        guard error == EPIPE || error == ECONNRESET else { return "expected EPIPE or ECONNRESET, got errno \(error)" }
        guard !bev.enabled.contains(.write) else { return "writing still enabled after the error" }
        return nil
    }
}
