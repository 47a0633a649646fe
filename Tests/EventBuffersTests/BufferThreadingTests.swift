import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// A shared-base lock provider for the threading tests.
struct SharedProvider: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () -> any LockProvider
    var testDescription: String { name }

    static let all: [SharedProvider] = [
        SharedProvider(name: "mutex") { MutexLockProvider() },
        SharedProvider(name: "rcu") { RCULockProvider() },
        SharedProvider(name: "debug") { DebugLockProvider(wrapping: MutexLockProvider()) },
    ]
}

func sharedBase(_ provider: SharedProvider) throws -> EventBase {
    var configuration = EventBase.Configuration(method: .epoll, lockProvider: provider.make())
    configuration.ignoreEnvironment = true
    return try EventBase(configuration)
}

/// The deadlocks libevent users report, each reproduced: none may happen here.
@Suite struct BufferThreadingTests {
    /// libevent #512, #1311: freeing a bufferevent from another thread while
    /// its callback runs.
    @Test(arguments: SharedProvider.all)
    func freeingFromAnotherThreadWhileTheCallbackRunsReturnsAtOnce(_ provider: SharedProvider) throws {
        let base = try sharedBase(provider)
        let pair = SocketPair()
        let bev = try SocketBufferEvent(base: base, fd: pair.left)
        let inCallback = Latch()
        let release = Latch()
        let callsAfterFree = Counter()
        let freed = AtomicFlag()
        bev.setCallbacks(
            read: { bev in
                if freed.value { callsAfterFree.increment() }
                inCallback.open()
                release.wait(timeout: .seconds(5))
                try? bev.input.drain(bev.input.count)
            }, write: nil, event: nil)
        try bev.enable(.read)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        pair.send("data")
        #expect(inCallback.wait(timeout: .seconds(5)))
        let start = now()
        let freeing = TestThread {
            bev.free()
            freed.value = true
        }
        #expect(freeing.join(timeout: .seconds(2)), "free() waited for the running callback")
        #expect(now() - start < .milliseconds(500))
        release.open()
        pair.send("more")
        pause(.milliseconds(50))
        #expect(callsAfterFree.value == 0, "a callback ran after free() returned")
        try base.loopBreak()
        loop.join()
    }

    @Test(arguments: SharedProvider.all)
    func disablingFromAnotherThreadWhileTheCallbackRunsReturnsAtOnce(_ provider: SharedProvider) throws {
        let base = try sharedBase(provider)
        let pair = SocketPair()
        let bev = try SocketBufferEvent(base: base, fd: pair.left)
        let inCallback = Latch()
        let release = Latch()
        let calls = Counter()
        bev.setCallbacks(
            read: { bev in
                calls.increment()
                inCallback.open()
                release.wait(timeout: .seconds(5))
                try? bev.input.drain(bev.input.count)
            }, write: nil, event: nil)
        try bev.enable(.read)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        pair.send("data")
        #expect(inCallback.wait(timeout: .seconds(5)))
        let disabling = TestThread { try? bev.disable(.read) }
        #expect(disabling.join(timeout: .seconds(2)), "disable() waited for the running callback")
        release.open()
        pause(.milliseconds(20))
        let callsAtDisable = calls.value
        pair.send("more")
        pause(.milliseconds(50))
        #expect(calls.value == callsAtDisable, "reading went on after disable")
        #expect(!bev.enabled.contains(.read))
        try bev.enable(.read)
        #expect(eventually { calls.value > callsAtDisable })
        bev.free()
        try base.loopBreak()
        loop.join()
    }

    /// libevent #1224: disabling a listener from another thread while its
    /// accept callback runs.
    @Test(arguments: SharedProvider.all)
    func disablingAListenerWhileItsAcceptCallbackRunsReturnsAtOnce(_ provider: SharedProvider) throws {
        let base = try sharedBase(provider)
        let inCallback = Latch()
        let release = Latch()
        let accepted = Counter()
        let listener = try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) {
            _, fd, _ in
            accepted.increment()
            inCallback.open()
            release.wait(timeout: .seconds(5))
            close(fd)
        }
        let port = try #require(listener.localAddress?.port)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let first = try connectBlocking(port: port)
        defer { close(first) }
        #expect(inCallback.wait(timeout: .seconds(5)))
        let disabling = TestThread { try? listener.disable() }
        #expect(disabling.join(timeout: .seconds(2)), "disable() waited for the accept callback")
        release.open()
        let second = try connectBlocking(port: port)
        defer { close(second) }
        pause(.milliseconds(50))
        #expect(accepted.value == 1, "the listener accepted after disable")
        try listener.enable()
        #expect(eventually { accepted.value == 2 })
        listener.free()
        try base.loopBreak()
        loop.join()
    }

    /// libevent #1750: two bufferevents on two bases, each loop on its own
    /// thread, each writing to the other from its read callback, both at once.
    @Test(arguments: SharedProvider.all)
    func twoBufferEventsOnTwoThreadsWritingToEachOtherDoNotDeadlock(_ provider: SharedProvider) throws {
        let firstBase = try sharedBase(provider)
        let secondBase = try sharedBase(provider)
        let firstWire = SocketPair()
        let secondWire = SocketPair()
        let a = try SocketBufferEvent(base: firstBase, fd: firstWire.left)
        let b = try SocketBufferEvent(base: secondBase, fd: secondWire.left)
        let rounds = Counter()
        let target = 2000
        a.setCallbacks(
            read: { a in
                let bytes = (try? a.input.remove(upTo: 1 << 16)) ?? []
                try? b.write(bytes)
                rounds.increment()
            }, write: nil, event: nil)
        b.setCallbacks(
            read: { b in
                let bytes = (try? b.input.remove(upTo: 1 << 16)) ?? []
                try? a.write(bytes)
                rounds.increment()
            }, write: nil, event: nil)
        try a.enable(.read)
        try b.enable(.read)
        let loops = [
            TestThread { _ = try? firstBase.loop(.noExitOnEmpty) },
            TestThread { _ = try? secondBase.loop(.noExitOnEmpty) },
        ]
        // Each feeder keeps its wire readable for the bufferevent, and drains
        // what the other bufferevent writes back into it.
        let feeders = [firstWire, secondWire].map { wire in
            TestThread {
                var chunk = [UInt8](repeating: 0x2A, count: 64)
                var sink = [UInt8](repeating: 0, count: 65536)
                while rounds.value < target {
                    _ = write(wire.right, &chunk, chunk.count)
                    while read(wire.right, &sink, sink.count) > 0 {}
                    pause(.microseconds(100))
                }
            }
        }
        #expect(rounds.wait(for: target, timeout: .seconds(20)) >= target, "the two loops stalled")
        for feeder in feeders { feeder.join(timeout: .seconds(5)) }
        // Both loops still answer: neither is stuck on the other's lock.
        try firstBase.loopBreak()
        try secondBase.loopBreak()
        for loop in loops { #expect(loop.join(timeout: .seconds(5))) }
        a.free()
        b.free()
    }

    /// Writes from many threads to one bufferevent arrive complete, in order
    /// per thread.
    @Test(arguments: SharedProvider.all)
    func writesFromManyThreadsAllArrive(_ provider: SharedProvider) throws {
        let base = try sharedBase(provider)
        let pair = SocketPair()
        let bev = try SocketBufferEvent(base: base, fd: pair.left)
        let loop = TestThread { _ = try? base.loop(.noExitOnEmpty) }
        let threads = (0..<4).map { index in
            TestThread {
                for round in 0..<500 {
                    try! bev.write("\(index):\(round);")
                }
            }
        }
        for thread in threads { thread.join() }
        var received: [UInt8] = []
        let expectedLength = (0..<4).reduce(0) { total, index in
            total + (0..<500).reduce(0) { $0 + "\(index):\($1);".utf8.count }
        }
        let deadline = now() + .seconds(10)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while received.count < expectedLength && now() < deadline {
            let n = read(pair.right, &buffer, buffer.count)
            if n > 0 { received += buffer[0..<n] } else { pause(.milliseconds(1)) }
        }
        #expect(received.count == expectedLength)
        let text = String(decoding: received, as: UTF8.self)
        for index in 0..<4 {
            let rounds = text.split(separator: ";").filter { $0.hasPrefix("\(index):") }.map { Int($0.split(separator: ":")[1])! }
            #expect(rounds == Array(0..<500), "thread \(index)'s writes arrived out of order or incomplete")
        }
        bev.free()
        try base.loopBreak()
        loop.join()
    }
}

/// A blocking TCP connection to 127.0.0.1:`port`.
func connectBlocking(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(rc == 0, "connect: \(errno)")
    return fd
}
