import EventBackends
import Glibc
import Testing
import EventTestSupport

@Suite("Backends: epoll, poll and select")
struct BackendTests {
    @Test("the backend reports its kind and its kind's features", arguments: BackendCase.all)
    func kindAndFeatures(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        #expect(backend.kind == backendCase.kind)
        #expect(backend.features == backendCase.kind.features)
    }

    @Test("a socket with data is reported readable, and only then", arguments: BackendCase.all)
    func readReadiness(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .zero)[pair.left] == nil, "reported readable with nothing to read")
        pair.send(bytes: 3)
        #expect(try waitFor(pair.left, on: backend) == .read)
        // Level-triggered: still reported while the data waits.
        #expect(try waitOnce(backend, timeout: .zero)[pair.left] == .read)
        #expect(pair.drain() == 3)
        #expect(try waitOnce(backend, timeout: .milliseconds(10))[pair.left] == nil, "reported readable after draining")
    }

    @Test("a socket with room is reported writable; a full one is not until the peer reads", arguments: BackendCase.all)
    func writeReadiness(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .write, edgeTriggered: false)
        #expect(try waitFor(pair.left, on: backend) == .write)
        #expect(pair.fill() > 0)
        #expect(try waitOnce(backend, timeout: .milliseconds(20))[pair.left] == nil, "a full socket reported writable")
        #expect(pair.drain(pair.right) > 0)
        #expect(try waitFor(pair.left, on: backend) == .write)
    }

    @Test("removing a descriptor stops its reports, and leaves the others", arguments: BackendCase.all)
    func removalStopsReports(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pairs = (0..<4).map { _ in SocketPair() }
        for pair in pairs {
            try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
            pair.send()
        }
        var ready = try waitOnce(backend, timeout: .seconds(5))
        for pair in pairs { #expect(ready[pair.left] == .read) }

        // Remove the first and third (poll moves its last slot into the gap).
        try backend.update(fd: pairs[0].left, from: .read, to: [], edgeTriggered: false)
        try backend.update(fd: pairs[2].left, from: .read, to: [], edgeTriggered: false)
        ready = try waitOnce(backend, timeout: .seconds(5))
        #expect(ready[pairs[0].left] == nil)
        #expect(ready[pairs[2].left] == nil)
        #expect(ready[pairs[1].left] == .read)
        #expect(ready[pairs[3].left] == .read)

        try backend.update(fd: pairs[1].left, from: .read, to: [], edgeTriggered: false)
        try backend.update(fd: pairs[3].left, from: .read, to: [], edgeTriggered: false)
        let start = ContinuousClock.now
        ready = try waitOnce(backend, timeout: .milliseconds(30))
        #expect(ready.isEmpty, "removed descriptors still reported: \(ready)")
        #expect(ContinuousClock.now - start >= .milliseconds(25), "the wait ended early with nothing watched")

        // Removing what is not registered is harmless.
        try backend.update(fd: pairs[1].left, from: [], to: [], edgeTriggered: false)
    }

    @Test("modifying interest changes what is reported", arguments: BackendCase.all)
    func modifyingInterest(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        // Writable but watched only for reading: nothing.
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .milliseconds(10))[pair.left] == nil)
        try backend.update(fd: pair.left, from: .read, to: .write, edgeTriggered: false)
        #expect(try waitFor(pair.left, on: backend) == .write)
        pair.send()
        #expect(try waitOnce(backend, timeout: .zero)[pair.left] == .write, "read reported without read interest")
        try backend.update(fd: pair.left, from: .write, to: [.read, .write], edgeTriggered: false)
        #expect(try waitFor(pair.left, on: backend) == [.read, .write])
        try backend.update(fd: pair.left, from: [.read, .write], to: .read, edgeTriggered: false)
        #expect(try waitFor(pair.left, on: backend) == .read)
    }

    @Test("adding a descriptor that is still registered (a reused number) replaces its interest", arguments: BackendCase.all)
    func addingTwiceReplaces(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        try backend.update(fd: pair.left, from: [], to: .write, edgeTriggered: false)
        pair.send()
        #expect(try waitFor(pair.left, on: backend) == .write)
        // And an interest change for a descriptor the backend lost is an add.
        try backend.reinitialize()
        try backend.update(fd: pair.left, from: .write, to: .read, edgeTriggered: false)
        #expect(try waitFor(pair.left, on: backend) == .read)
    }

    @Test("many descriptors: exactly the ready ones are reported", arguments: BackendCase.all)
    func manyDescriptors(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pairs = (0..<150).map { _ in SocketPair() }
        for pair in pairs {
            try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        }
        let readable = Set(pairs.enumerated().filter { $0.offset % 3 != 0 }.map { $0.element.left })
        for pair in pairs where readable.contains(pair.left) { pair.send() }

        // epoll hands out at most its array's size per wait (and grows it);
        // collect over a few waits.
        var seen: [Int32: IOEvents] = [:]
        let deadline = ContinuousClock.now + .seconds(5)
        while Set(seen.keys) != readable && ContinuousClock.now < deadline {
            seen.merge(try waitOnce(backend, timeout: .milliseconds(100))) { $0.union($1) }
        }
        #expect(Set(seen.keys) == readable)
        #expect(seen.values.allSatisfy { $0 == .read })
        if backendCase.kind != .epoll {
            // poll and select report every ready descriptor in one wait.
            #expect(Set(try waitOnce(backend, timeout: .zero).keys) == readable)
        }

        // Everyone watched for writing: all 150 are writable.
        for pair in pairs {
            try backend.update(fd: pair.left, from: .read, to: .write, edgeTriggered: false)
        }
        let all = Set(pairs.map(\.left))
        seen = [:]
        while Set(seen.keys) != all && ContinuousClock.now < deadline + .seconds(5) {
            seen.merge(try waitOnce(backend, timeout: .milliseconds(100))) { $0.union($1) }
        }
        #expect(Set(seen.keys) == all)
    }

    @Test("a closed peer is reported to a reader, which then reads end of file", arguments: BackendCase.all)
    func closedPeerReported(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .zero)[pair.left] == nil)
        pair.closeRight()
        let events = try #require(try waitFor(pair.left, on: backend))
        #expect(events.contains(.read))
        #expect(!events.contains(.closed), "early close reported without being asked for")
        var byte: UInt8 = 0
        #expect(read(pair.left, &byte, 1) == 0)
    }

    @Test("early close: epoll and poll report the peer's shutdown as .closed; select refuses it", arguments: BackendCase.all)
    func earlyClose(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        guard backendCase.kind.features.contains(.earlyClose) else {
            #expect(backendCase.kind == .select)
            let error = #expect(throws: SystemCallError.self) {
                try backend.update(fd: pair.left, from: [], to: [.read, .closed], edgeTriggered: false)
            }
            #expect(error?.errno == EOPNOTSUPP)
            #expect(error?.fd == pair.left)
            // Adding .closed to an existing registration is refused too.
            try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
            #expect(throws: SystemCallError.self) {
                try backend.update(fd: pair.left, from: .read, to: [.read, .closed], edgeTriggered: false)
            }
            return
        }
        try backend.update(fd: pair.left, from: [], to: [.read, .closed], edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .zero)[pair.left] == nil)
        // Half-close: the peer stops writing but the socket stays open.
        #expect(shutdown(pair.right, Int32(SHUT_WR)) == 0)
        let events = try #require(try waitFor(pair.left, on: backend))
        #expect(events.contains(.closed))
        #expect(events.contains(.read))

        // .closed alone (no read interest) is reported too, on a full close.
        let other = SocketPair()
        try backend.update(fd: other.left, from: [], to: .closed, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .zero)[other.left] == nil)
        other.closeRight()
        let closedEvents = try #require(try waitFor(other.left, on: backend))
        #expect(closedEvents.contains(.closed))
    }

    @Test("descriptors at or above FD_SETSIZE (1024) work, select included", arguments: BackendCase.all)
    func highDescriptors(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        let low = SocketPair()
        let high = try duplicate(pair.left, atOrAbove: 1500 + 10 * backendCase.slot)
        defer { close(high) }
        #expect(high >= 1500)
        try backend.update(fd: high, from: [], to: .read, edgeTriggered: false)
        try backend.update(fd: low.left, from: [], to: .read, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .milliseconds(10)).isEmpty)
        pair.send()
        #expect(try waitFor(high, on: backend) == .read)
        low.send()
        let ready = try waitOnce(backend, timeout: .seconds(5))
        #expect(ready[high] == .read)
        #expect(ready[low.left] == .read)
        try backend.update(fd: high, from: .read, to: [.read, .write], edgeTriggered: false)
        #expect(try waitFor(high, on: backend) == [.read, .write])
        // Dropping the highest descriptor leaves the low one working.
        try backend.update(fd: high, from: [.read, .write], to: [], edgeTriggered: false)
        let after = try waitOnce(backend, timeout: .seconds(5))
        #expect(after[high] == nil)
        #expect(after[low.left] == .read)
    }

    @Test("registering a descriptor that is not open fails with EBADF naming it", arguments: BackendCase.all)
    func closedDescriptorRejected(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        // A high number nobody else in this process opens, so it stays closed.
        let fd = try duplicate(pair.left, atOrAbove: 9000 + 100 * backendCase.slot)
        close(fd)
        let error = #expect(throws: SystemCallError.self) {
            try backend.update(fd: fd, from: [], to: .read, edgeTriggered: false)
        }
        #expect(error?.errno == EBADF)
        #expect(error?.fd == fd)
        #expect(error?.description.contains("\(fd)") == true)
        // The failed registration left nothing behind.
        #expect(try waitOnce(backend, timeout: .zero).isEmpty)
    }

    @Test("regular files: epoll refuses them with EPERM; poll and select report them ready", arguments: BackendCase.all)
    func regularFiles(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let file = try openTemporaryFile()
        defer { close(file) }
        if backendCase.kind == .epoll {
            #expect(!backend.features.contains(.arbitraryFileDescriptors))
            let error = #expect(throws: SystemCallError.self) {
                try backend.update(fd: file, from: [], to: .read, edgeTriggered: false)
            }
            #expect(error?.errno == EPERM)
            #expect(error?.fd == file)
        } else {
            #expect(backend.features.contains(.arbitraryFileDescriptors))
            try backend.update(fd: file, from: [], to: [.read, .write], edgeTriggered: false)
            #expect(try waitOnce(backend, timeout: .seconds(1))[file] == [.read, .write])
        }
    }

    @Test("a descriptor closed while registered does not break the wait", arguments: BackendCase.all)
    func descriptorClosedWhileRegistered(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        let live = SocketPair()
        let doomed = try duplicate(pair.left, atOrAbove: 12000 + 100 * backendCase.slot)
        try backend.update(fd: doomed, from: [], to: .read, edgeTriggered: false)
        try backend.update(fd: live.left, from: [], to: .read, edgeTriggered: false)
        close(doomed)
        live.send()
        let ready = try waitOnce(backend, timeout: .seconds(5))
        #expect(ready[live.left] == .read, "a closed registration hid a ready descriptor")
        if backendCase.kind == .epoll {
            // The kernel dropped it from the epoll set with its last descriptor.
            #expect(ready[doomed] == nil)
        } else {
            // poll's POLLNVAL, and select's EBADF, wake both directions so the owner sees the error.
            #expect(ready[doomed] == [.read, .write])
        }
        // Removing it afterwards is not an error.
        try backend.update(fd: doomed, from: .read, to: [], edgeTriggered: false)
        let after = try waitOnce(backend, timeout: .seconds(5))
        #expect(after[doomed] == nil)
        #expect(after[live.left] == .read)
    }

    @Test("wait timeouts are respected: never early, not much late", arguments: BackendCase.all, [Duration.milliseconds(30), .microseconds(2_500)])
    func timeoutsRespected(_ backendCase: BackendCase, timeout: Duration) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        for _ in 0..<3 {
            let start = ContinuousClock.now
            let ready = try waitOnce(backend, timeout: timeout)
            let elapsed = ContinuousClock.now - start
            #expect(ready.isEmpty)
            #expect(elapsed >= timeout, "woke after \(elapsed), before the \(timeout) timeout")
            #expect(elapsed < timeout + .seconds(1), "woke after \(elapsed) for a \(timeout) timeout")
        }
    }

    @Test("a zero timeout polls and returns at once; data ends a long wait early", arguments: BackendCase.all)
    func zeroAndLongTimeouts(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        var start = ContinuousClock.now
        #expect(try waitOnce(backend, timeout: .zero).isEmpty)
        #expect(ContinuousClock.now - start < .milliseconds(500))

        let sender = TestThread {
            pause(.milliseconds(20))
            pair.send()
        }
        start = ContinuousClock.now
        var ready = try waitOnce(backend, timeout: .seconds(30))
        if ready.isEmpty { ready = try waitOnce(backend, timeout: .seconds(30)) } // an interrupted wait
        #expect(ready[pair.left] == .read)
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(sender.join())

        // No limit at all (negative): returns on readiness.
        start = ContinuousClock.now
        #expect(try waitOnce(backend, timeout: .nanoseconds(-1))[pair.left] == .read)
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test("a wait with nothing registered sleeps for its timeout", arguments: BackendCase.all)
    func emptyWait(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let start = ContinuousClock.now
        #expect(try waitOnce(backend, timeout: .milliseconds(20)).isEmpty)
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(20))
        #expect(elapsed < .seconds(1))
    }

    @Test("epoll edge-triggered: reported once per new arrival", arguments: BackendCase.all.filter { $0.kind == .epoll })
    func edgeTriggered(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        #expect(backend.features.contains(.edgeTriggered))
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: true)
        pair.send()
        #expect(try waitFor(pair.left, on: backend) == .read)
        #expect(try waitOnce(backend, timeout: .milliseconds(10))[pair.left] == nil, "an edge was reported twice")
        pair.send()
        #expect(try waitFor(pair.left, on: backend) == .read)
        // Back to level-triggered: reported while data waits.
        try backend.update(fd: pair.left, from: .read, to: .read, edgeTriggered: false)
        #expect(try waitOnce(backend, timeout: .zero)[pair.left] == .read)
        #expect(try waitOnce(backend, timeout: .zero)[pair.left] == .read)
    }

    @Test("reinitialize drops every registration; descriptors can be registered again", arguments: BackendCase.all)
    func reinitializeDropsRegistrations(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        defer { backend.close() }
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        pair.send()
        #expect(try waitFor(pair.left, on: backend) == .read)
        try backend.reinitialize()
        #expect(try waitOnce(backend, timeout: .milliseconds(10)).isEmpty, "a registration survived reinitialize")
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        #expect(try waitFor(pair.left, on: backend) == .read)
        // Timeouts still work after reinitialize (epoll recreates its timerfd).
        pair.drain()
        let start = ContinuousClock.now
        #expect(try waitOnce(backend, timeout: .milliseconds(15)).isEmpty)
        #expect(ContinuousClock.now - start >= .milliseconds(15))
    }

    @Test("close is idempotent", arguments: BackendCase.all)
    func closeTwice(_ backendCase: BackendCase) throws {
        let backend = try backendCase.make()
        let pair = SocketPair()
        try backend.update(fd: pair.left, from: [], to: .read, edgeTriggered: false)
        backend.close()
        backend.close()
    }
}
