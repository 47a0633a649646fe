import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

// MARK: the README example (README.md, "an async echo server"), compiled and run here

/// Echoes every connection `listener` accepts until the task is cancelled.
func serveEcho(_ listener: ConnectionListener) async throws {
    try await withThrowingDiscardingTaskGroup { group in
        for try await (connection, _) in listener.connections() {
            group.addTask {
                do {
                    for try await chunk in connection.received {
                        try await connection.write(chunk)  // waits while the peer is slow to read
                    }
                    try await connection.close()  // end of file: flush what is left, then close
                } catch {
                    // Reset by the peer, timed out or cancelled: the
                    // connection is freed (its socket closed) as it goes.
                }
            }
        }
    }
}

/// An echo server on 127.0.0.1:`port` (0: a port the kernel picks) until
/// the task is cancelled: a shared base (any thread may use it) whose loop
/// runs on a thread of its own.
func runEchoServer(
    port: UInt16, listening: @Sendable (SocketAddress) -> Void = { print("echo server on \($0)") }
) async throws {
    let base = try EventBase(.init(method: nil, lockProvider: MutexLockProvider()))
    let listener = try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: port))
    Thread { _ = try? base.loop(.noExitOnEmpty) }.start()
    if let address = listener.localAddress { listening(address) }
    defer {
        listener.free()
        try? base.loopExit()
    }
    try await serveEcho(listener)
}

// MARK: helpers

/// The two threading modes a base can have.
enum AsyncBaseKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case owned, shared
    var testDescription: String { rawValue }
}

/// A base whose loop runs on its own thread: owned (made on that thread, so
/// other threads reach it through `post`) or shared (mutex provider).
final class IOLoopBase: Sendable {
    let base: EventBase
    private let stopLoop: @Sendable () -> Void

    init(_ kind: AsyncBaseKind) throws {
        switch kind {
        case .owned:
            let loop = LoopThread()
            base = loop.base
            stopLoop = { loop.stop() }
        case .shared:
            let base = try EventBase(.init(method: .epoll, lockProvider: MutexLockProvider()))
            let thread = TestThread { _ = try? base.loop(.noExitOnEmpty) }
            self.base = base
            stopLoop = {
                try? base.loopExit()
                thread.join()
                try? base.shutdown()
            }
        }
    }

    func stop() { stopLoop() }

    /// Runs `body` on the loop thread (any base allows that) and returns its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try base.post { continuation.resume(with: Result { try body() }) }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// A listener on 127.0.0.1, port chosen by the kernel, made on the loop thread.
    func listener() async throws -> (ConnectionListener, UInt16) {
        let base = self.base
        let listener = try await onLoop { try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) }
        return (listener, try #require(listener.localAddress?.port))
    }
}

/// How a peer saw its connection end.
enum PeerEnd: Equatable {
    case endOfFile, reset, stillOpen
}

/// The client end of a TCP connection: a blocking socket whose reads and
/// writes give up after 30 s, so a broken test fails instead of hanging.
final class Peer: Sendable {
    let fd: Int32
    private let open = Atomic<Bool>(true)

    init(port: UInt16) throws {
        fd = try connectLoopback(port: port)
        var limit = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { if open.load(ordering: .sequentiallyConsistent) { close(fd) } }

    /// Writes everything; the errno if a write failed.
    @discardableResult
    func sendNow(_ bytes: [UInt8]) -> Int32? {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += n
        }
        return nil
    }

    /// Reads until `count` bytes arrived or the stream ended.
    func receiveNow(count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while result.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - result.count), 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            result += buffer[0..<n]
        }
        return result
    }

    /// How the connection ends within `timeout`: end of file, reset, or
    /// still open (bytes that arrive meanwhile are read and dropped).
    func endNow(within timeout: Duration) -> PeerEnd {
        let deadline = now() + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = deadline - now()
            if left <= .zero { return .stillOpen }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(max(1, left.seconds * 1000)))
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { return .endOfFile }
            if n < 0 && errno == ECONNRESET { return .reset }
        }
    }

    // The same, awaited from a task: they block a thread of their own, never
    // one of the few the concurrency runtime has (the code under test needs them).

    @discardableResult
    func send(_ bytes: [UInt8]) async -> Int32? { await blocking { self.sendNow(bytes) } }

    func receive(count: Int) async -> [UInt8] { await blocking { self.receiveNow(count: count) } }

    func end(within timeout: Duration) async -> PeerEnd { await blocking { self.endNow(within: timeout) } }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Closes with a reset (SO_LINGER 0), as a crashed peer does.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        if open.exchange(false, ordering: .sequentiallyConsistent) { close(fd) }
    }
}

/// An integer shared between tasks and threads.
final class AtomicInt: Sendable {
    private let storage = Atomic<Int>(0)
    var value: Int { storage.load(ordering: .sequentiallyConsistent) }
    func add(_ amount: Int) { storage.add(amount, ordering: .sequentiallyConsistent) }
    /// Raises the value to `candidate` if that is larger.
    func raise(to candidate: Int) { storage.max(candidate, ordering: .sequentiallyConsistent) }
}

/// Runs `body` on a thread of its own and returns its result: blocking
/// calls must not hold one of the concurrency runtime's threads.
@discardableResult
func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

/// The test pattern: byte `i` of a stream (a prime period, so a chunk lost,
/// repeated or reordered shows).
func patternByte(_ i: Int) -> UInt8 { UInt8(i % 251) }

/// Connections waiting in a listening socket's kernel accept queue (Linux
/// reports them as `tcpi_unacked` of a listening socket).
func acceptQueueLength(_ fd: Int32) -> Int {
    var info = tcp_info()
    var length = socklen_t(MemoryLayout<tcp_info>.size)
    guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 else { return -1 }
    return Int(info.tcpi_unacked)
}

/// Polls `condition` (asynchronously) until it holds or `timeout` passes.
func eventuallyAsync(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = now() + timeout
    while now() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}

// MARK: tests

@Suite("AsyncBuffer: async bufferevent reads and writes with back-pressure, accept as an AsyncSequence")
struct AsyncBufferTests {
    /// The README's echo server, run as written: three clients at once get
    /// back exactly what they send; cancelling the server ends it.
    @Test func readmeEchoServer() async throws {
        let address = Box<SocketAddress>()
        let server = Task { try await runEchoServer(port: 0) { address.value = $0 } }
        #expect(await eventuallyAsync { address.value != nil })
        let port = try #require(address.value?.port)
        let clients = (0..<3).map { index in
            TestThread {
                guard let peer = try? Peer(port: port) else {
                    Issue.record("client \(index) could not connect")
                    return
                }
                let message = (0..<200_000).map { patternByte($0 + index) }
                let reader = TestThread { #expect(peer.receiveNow(count: message.count) == message) }
                #expect(peer.sendNow(message) == nil)
                reader.join(timeout: .seconds(30))
                peer.shutdownWrite()
                #expect(peer.endNow(within: .seconds(20)) == .endOfFile, "the server closes after the client's end of file")
            }
        }
        for client in clients { await blocking { client.join(timeout: .seconds(60)) } }
        server.cancel()
        await #expect(throws: CancellationError.self) { try await server.value }
    }

    /// Accept sequence + chunk sequence + async write on both kinds of base.
    @Test(arguments: AsyncBaseKind.allCases)
    func echoServer(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        let server = Task { try await serveEcho(listener) }
        let peers = try (0..<4).map { _ in try Peer(port: port) }
        for (index, peer) in peers.enumerated() {
            let message = Array("hello \(index) from a peer".utf8)
            #expect(await peer.send(message) == nil)
            #expect(await peer.receive(count: message.count) == message)
        }
        server.cancel()
        await #expect(throws: CancellationError.self) { try await server.value }
        // Cancelling stopped accepting and freed the connections being served.
        #expect(try await running.onLoop { listener.isAccepting } == false)
        for peer in peers { #expect(await peer.end(within: .seconds(20)) == .endOfFile) }
        try await running.onLoop { listener.free() }
    }

    /// The zero-copy faces: chunks received as buffers (segments moved out
    /// of the input) and written on with write(buffer:), which empties them.
    /// 4 MB echoed through them arrive intact and in order.
    @Test(arguments: AsyncBaseKind.allCases)
    func echoWithMovedBuffers(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        let message = (0..<(4 * 1024 * 1024)).map(patternByte)
        let client = TestThread {
            guard let peer = try? Peer(port: port) else {
                Issue.record("could not connect")
                return
            }
            let reader = TestThread { #expect(peer.receiveNow(count: message.count) == message) }
            #expect(peer.sendNow(message) == nil)
            reader.join(timeout: .seconds(60))
            peer.shutdownWrite()
            #expect(peer.endNow(within: .seconds(30)) == .endOfFile)
        }
        var connections = listener.connections().makeAsyncIterator()
        let (connection, _) = try #require(try await connections.next())
        var echoed = 0
        var allEmptied = true
        var withinBound = true
        for try await buffer in connection.receivedBuffers {
            let count = buffer.count
            withinBound = withinBound && count > 0 && count <= connection.configuration.readHighWatermark
            try await connection.write(buffer: buffer)
            allEmptied = allEmptied && buffer.count == 0
            echoed += count
        }
        #expect(echoed == message.count)
        #expect(withinBound)
        #expect(allEmptied, "write(buffer:) moves the bytes out")
        try await connection.close()
        await blocking { client.join(timeout: .seconds(90)) }
        try await running.onLoop { listener.free() }
    }

    /// The owner frees the bufferevent itself instead of calling close():
    /// the task waiting to receive gets the end (it does not hang), later
    /// writes throw `.closed`, and the socket is closed.
    @Test(arguments: AsyncBaseKind.allCases)
    func freeingTheBufferEventItselfEndsTheWaits(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        let peer = try Peer(port: port)
        var connections = listener.connections().makeAsyncIterator()
        let (connection, _) = try #require(try await connections.next())
        let ended = AtomicFlag()
        let receiver = Task {
            defer { ended.value = true }
            return try await connection.receive()
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(!ended.value, "nothing was sent: the receiver waits")
        try await running.onLoop { connection.bufferEvent.free() }
        #expect(await eventuallyAsync(timeout: .seconds(20)) { ended.value })
        if ended.value {
            #expect(try await receiver.value == nil)
        } else {
            receiver.cancel()
        }
        await #expect(throws: AsyncBufferEventError.closed) { try await connection.write("late") }
        #expect(await peer.end(within: .seconds(20)) == .endOfFile)
        try await running.onLoop { listener.free() }
    }

    /// A slow consumer: the peer writes 16 MB, the consumer sleeps between
    /// chunks. The bytes buffered and not consumed never exceed the read high
    /// watermark plus one read, and all of them arrive intact and in order.
    @Test(arguments: AsyncBaseKind.allCases)
    func slowConsumerHoldsThePeerBack(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        // 256 blocks of 251 × 261 bytes (the pattern repeats every 251): 16 MB.
        let block = (0..<(251 * 261)).map(patternByte)
        let total = 256 * block.count
        let writer = TestThread {
            guard let peer = try? Peer(port: port) else {
                Issue.record("could not connect")
                return
            }
            for _ in 0..<256 where peer.sendNow(block) != nil {
                Issue.record("the peer's write failed")
                return
            }
            peer.shutdownWrite()
            #expect(peer.endNow(within: .seconds(60)) == .endOfFile)
        }
        // What any chunk (at most 64 KiB) must equal, from its start in the period.
        let reference = (0..<(251 + 64 * 1024)).map(patternByte)
        var connections = listener.connections().makeAsyncIterator()
        let (connection, _) = try #require(try await connections.next())
        let highest = AtomicInt()
        _ = try await running.onLoop {
            connection.bufferEvent.input.addCallback { _, change in
                highest.raise(to: change.originalLength + change.added - change.removed)
            }
        }
        var received = 0
        var intact = true
        var chunks = 0
        for try await chunk in connection.received {
            let start = received % 251
            intact = intact && chunk.count <= 64 * 1024 && chunk.withUnsafeBytes { got in
                reference.withUnsafeBytes { memcmp(got.baseAddress!, $0.baseAddress! + start, got.count) == 0 }
            }
            received += chunk.count
            chunks += 1
            try await Task.sleep(for: .milliseconds(2))
        }
        #expect(received == total)
        #expect(intact)
        let bound = connection.configuration.readHighWatermark + 16 * 1024
        let seen = highest.value
        #expect(seen <= bound, "\(seen) bytes were buffered, more than \(bound)")
        // The consumer did lag: the input filled well beyond one read.
        #expect(seen > 32 * 1024)
        try await connection.close()
        await blocking { writer.join(timeout: .seconds(60)) }
        try await running.onLoop { listener.free() }
    }

    /// A writer that awaits each write cannot grow the output: with a peer
    /// that does not read, the writes stall with at most one chunk queued,
    /// and go on when the peer reads.
    @Test(arguments: AsyncBaseKind.allCases)
    func writesWaitForTheOutputToDrain(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        let peer = try Peer(port: port)
        var connections = listener.connections().makeAsyncIterator()
        let (connection, _) = try #require(try await connections.next())
        let written = AtomicInt()
        let chunk = [UInt8](repeating: 0x61, count: 64 * 1024)
        let writer = Task {
            while true {
                try await connection.write(chunk)
                written.add(chunk.count)
            }
        }
        // The kernel's buffers fill, then the writer waits.
        #expect(await eventuallyAsync {
            let before = written.value
            try? await Task.sleep(for: .milliseconds(300))
            return before > 0 && written.value == before
        })
        let stalledAt = written.value
        let queued = try await running.onLoop { connection.bufferEvent.output.count }
        #expect(queued > 0 && queued <= chunk.count, "\(queued) bytes queued")
        // The peer reads: the writer goes on.
        let reader = TestThread { _ = peer.receiveNow(count: stalledAt + 4 * chunk.count) }
        #expect(await eventuallyAsync { written.value >= stalledAt + 2 * chunk.count })
        await blocking { reader.join(timeout: .seconds(30)) }
        writer.cancel()
        await #expect(throws: CancellationError.self) { try await writer.value }
        try await connection.close()
        try await running.onLoop { listener.free() }
    }

    /// Cancelling the task that reads, in the middle of a transfer: the
    /// iteration ends with CancellationError at once, reading stays off (the
    /// connection is the owner's, still open); closing it resets the peer,
    /// which still had data on the way.
    @Test(arguments: AsyncBaseKind.allCases)
    func cancellingTheReaderInTheMiddleOfATransfer(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        let writeError = Box<Int32>()
        let writer = TestThread {
            guard let peer = try? Peer(port: port) else {
                Issue.record("could not connect")
                return
            }
            let block = [UInt8](repeating: 0x62, count: 64 * 1024)
            while true {
                if let error = peer.sendNow(block) {
                    writeError.value = error
                    return
                }
            }
        }
        var connections = listener.connections().makeAsyncIterator()
        let (connection, _) = try #require(try await connections.next())
        let received = AtomicInt()
        let reader = Task {
            for try await chunk in connection.received { received.add(chunk.count) }
        }
        #expect(await eventuallyAsync { received.value >= 1024 * 1024 })
        let start = now()
        reader.cancel()
        await #expect(throws: CancellationError.self) { try await reader.value }
        #expect(now() - start < .seconds(10))
        #expect(try await running.onLoop { connection.bufferEvent.enabled.contains(.read) } == false)
        #expect(try await running.onLoop { connection.bufferEvent.isFree } == false)
        // The iteration stays ended, also for another task.
        await #expect(throws: CancellationError.self) { try await connection.receive() }
        #expect(await blocking { writer.finishes(within: .milliseconds(300)) } == false, "the peer's writes stall, they do not fail")
        try await connection.close()
        #expect(try await running.onLoop { connection.bufferEvent.isFree })
        await blocking { writer.join(timeout: .seconds(20)) }
        #expect(writeError.value == ECONNRESET || writeError.value == EPIPE, "the peer's write ended with errno \(writeError.value ?? 0)")
        try await running.onLoop { listener.free() }
    }

    /// End of file ends the sequence after the bytes sent before it; the
    /// other direction stays open (a half-close), and close() flushes.
    @Test(arguments: AsyncBaseKind.allCases)
    func endOfFileEndsTheSequence(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        let peer = try Peer(port: port)
        #expect(await peer.send(Array("hello, then end of file".utf8)) == nil)
        peer.shutdownWrite()
        var connections = listener.connections().makeAsyncIterator()
        let (connection, _) = try #require(try await connections.next())
        var text: [UInt8] = []
        for try await chunk in connection.received { text += chunk }
        #expect(String(decoding: text, as: UTF8.self) == "hello, then end of file")
        #expect(try await connection.receive() == nil)
        try await connection.write("bye")
        try await connection.close()
        #expect(await peer.receive(count: 3) == Array("bye".utf8))
        #expect(await peer.end(within: .seconds(20)) == .endOfFile)
        try await running.onLoop { listener.free() }
    }

    /// A reset peer: the bytes sent before the reset arrive, then the
    /// sequence throws readFailed(ECONNRESET) and a write throws
    /// writeFailed. A silent peer past the read timeout: readTimedOut.
    @Test(arguments: AsyncBaseKind.allCases)
    func errorsAndTimeoutsThrow(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        var connections = listener.connections().makeAsyncIterator()

        let resetting = try Peer(port: port)
        let (reset, _) = try #require(try await connections.next())
        #expect(await resetting.send(Array("x".utf8)) == nil)
        #expect(try await reset.receive() == Array("x".utf8))
        resetting.reset()
        await #expect(throws: AsyncBufferEventError.readFailed(errno: ECONNRESET)) {
            while try await reset.receive() != nil {}
        }
        do {
            try await reset.write("too late")
            Issue.record("a write to a reset connection succeeded")
        } catch let error as AsyncBufferEventError {
            #expect(error == .writeFailed(errno: EPIPE) || error == .writeFailed(errno: ECONNRESET), "\(error)")
        }
        try? await reset.close()

        let silent = try Peer(port: port)
        let (waiting, _) = try #require(try await connections.next())
        let start = now()
        try await running.onLoop { try waiting.bufferEvent.setTimeouts(read: .milliseconds(200), write: nil) }
        await #expect(throws: AsyncBufferEventError.readTimedOut) { try await waiting.receive() }
        #expect(now() - start >= .milliseconds(150))
        try await waiting.close()
        #expect(await silent.end(within: .seconds(20)) == .endOfFile)
        try await running.onLoop { listener.free() }
    }

    /// At most `backlog` accepted connections wait for a consumer: the
    /// listener is disabled meanwhile (the rest wait in the kernel's queue)
    /// and enabled when the consumer takes one. Connections come in order.
    /// When the iteration ends, those accepted but not handed over are
    /// closed; those handed over stay open.
    @Test(arguments: AsyncBaseKind.allCases)
    func acceptBacklogIsBounded(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, port) = try await running.listener()
        let peers = try (0..<6).map { index in
            let peer = try Peer(port: port)
            #expect(peer.sendNow([UInt8(index)]) == nil)
            return peer
        }
        var delivered: [AsyncBufferEvent] = []
        do {
            var connections = listener.connections(backlog: 2).makeAsyncIterator()
            for expected in 0..<2 {
                let (connection, peer) = try #require(try await connections.next())
                #expect(try await connection.receive() == [UInt8(expected)])
                #expect(peer.port == (try SocketAddress.local(of: peers[expected].fd)).port)
                delivered.append(connection)
                // Two more wait for the consumer, the rest in the kernel.
                #expect(await eventuallyAsync { acceptQueueLength(listener.fd) == 6 - (expected + 1) - 2 })
                #expect(try await running.onLoop { listener.isAccepting } == false)
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(acceptQueueLength(listener.fd) == 2, "the listener stays paused")
        }
        // The iteration ended: the two connections waiting are closed, the
        // two handed over are not; the listener is off.
        #expect(await peers[2].end(within: .seconds(20)) != .stillOpen)
        #expect(await peers[3].end(within: .seconds(20)) != .stillOpen)
        #expect(await peers[0].end(within: .milliseconds(300)) == .stillOpen)
        #expect(await peers[1].end(within: .milliseconds(300)) == .stillOpen)
        #expect(try await running.onLoop { listener.isAccepting } == false)
        // Freeing the listener drops the connections the kernel still held.
        try await running.onLoop { listener.free() }
        #expect(await peers[4].end(within: .seconds(20)) != .stillOpen)
        #expect(await peers[5].end(within: .seconds(20)) != .stillOpen)
        for connection in delivered { try await connection.close() }
        #expect(await peers[0].end(within: .seconds(20)) == .endOfFile)
    }

    /// Cancelling the accepting task ends the sequence at once and stops
    /// accepting; freeing the listener ends it with nil.
    @Test(arguments: AsyncBaseKind.allCases)
    func acceptEndsOnCancellationAndOnFree(_ kind: AsyncBaseKind) async throws {
        let running = try IOLoopBase(kind)
        defer { running.stop() }
        let (listener, _) = try await running.listener()
        let accepting = Task { for try await _ in listener.connections() {} }
        #expect(try await eventuallyAsync { try await running.onLoop { listener.isAccepting } })
        accepting.cancel()
        await #expect(throws: CancellationError.self) { try await accepting.value }
        #expect(try await running.onLoop { listener.isAccepting } == false)

        let counting = Task {
            var count = 0
            for try await _ in listener.connections() { count += 1 }
            return count
        }
        #expect(try await eventuallyAsync { try await running.onLoop { listener.isAccepting } })
        try await running.onLoop { listener.free() }
        #expect(try await counting.value == 0)
    }
}
