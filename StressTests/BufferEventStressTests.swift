import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// Many bufferevents on one shared base, driven from several threads:
/// writes, disables, re-enables and frees at random. No crash, no deadlock,
/// and on every connection that was not freed, every byte written comes back.
@Suite struct BufferEventStressTests {
    static let providers: [(String, @Sendable () -> any LockProvider)] = [
        ("mutex", { MutexLockProvider() }),
        ("rcu", { RCULockProvider() }),
        ("debug", { DebugLockProvider(wrapping: MutexLockProvider()) }),
    ]

    /// One echo connection: a client bufferevent and an echoing server one on a socketpair.
    final class Connection: @unchecked Sendable {
        // `expected` is written by the one worker thread that owns the
        // connection; `received` by the loop thread; both read after the run.
        let client: SocketBufferEvent
        let server: SocketBufferEvent
        var expected: [UInt8] = []
        let received = Guarded<[UInt8]>([])

        init(base: EventBase) throws {
            var fds: [Int32] = [-1, -1]
            precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
            server = try SocketBufferEvent(base: base, fd: fds[0], options: [.closeOnFree])
            client = try SocketBufferEvent(base: base, fd: fds[1], options: [.closeOnFree])
            server.setCallbacks(read: { bev in try? bev.output.add(buffer: bev.input) }, write: nil, event: nil)
            client.setCallbacks(read: { [received] bev in
                let bytes = (try? bev.input.remove(upTo: 1 << 20)) ?? []
                received.withLock { $0 += bytes }
            }, write: nil, event: nil)
            try server.enable(.read)
            try client.enable(.read)
        }

        func free() {
            client.free()
            server.free()
        }
    }

    @Test(arguments: providers.map(\.0))
    func bufferEventsDrivenFromManyThreads(_ name: String) throws {
        let provider = Self.providers.first { $0.0 == name }!.1()
        var configuration = EventBase.Configuration(method: .epoll, lockProvider: provider)
        configuration.ignoreEnvironment = true
        let base = try EventBase(configuration)
        let seconds = SharedBaseStressTests.seconds
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let deadline = now() + .seconds(seconds)
        let verified = Counter()
        let mismatches = Counter()
        let stalls = Counter()
        let workers = (0..<4).map { worker in
            TestThread {
                var random = SplitMix(seed: UInt64(worker + 7) * 0x5851_F42D)
                while now() < deadline {
                    guard let connection = try? Connection(base: base) else { continue }
                    let writes = Int(random.next() % 40) + 1
                    var freedEarly = false
                    for write in 0..<writes {
                        let length = Int(random.next() % 3000) + 1
                        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &+ write &+ worker) }
                        try? connection.client.write(bytes)
                        connection.expected += bytes
                        switch random.next() % 20 {
                        case 0:
                            try? connection.client.disable(.read)
                            sched_yield()
                            try? connection.client.enable(.read)
                        case 1:
                            try? connection.server.disable(.read)
                            try? connection.server.enable(.read)
                        case 2 where write > writes / 2:
                            // Freed mid-transfer, from this thread, while the loop may be in its callbacks.
                            connection.free()
                            freedEarly = true
                        default:
                            break
                        }
                        if freedEarly { break }
                    }
                    if freedEarly { continue }
                    let expected = connection.expected.count
                    let arrived = eventually(timeout: .seconds(10)) {
                        connection.received.withLock { $0.count } >= expected
                    }
                    if !arrived {
                        stalls.increment()
                    } else if connection.received.withLock({ $0 }) != connection.expected {
                        mismatches.increment()
                    } else {
                        verified.increment()
                    }
                    connection.free()
                }
            }
        }
        for worker in workers { #expect(worker.join(timeout: .seconds(seconds + 60))) }
        #expect(verified.value > 0)
        #expect(stalls.value == 0, "\(stalls.value) connections stalled: bytes lost or the loop stuck")
        #expect(mismatches.value == 0, "\(mismatches.value) connections echoed different bytes")
        try base.loopBreak()
        #expect(loop.join(timeout: .seconds(10)), "the loop did not stop")
    }
}
