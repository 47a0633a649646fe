// Reading from and writing to descriptors: read(from:maxBytes:)
// (evbuffer_read) and write(to:maxBytes:) (evbuffer_write_atmost), their
// results and their errors.
import EventBackends
import EventBuffers
import EventTestSupport
import Glibc
import Testing

@Suite struct EventBufferIOTests {
    // MARK: reading

    @Test func readReportsTransferredThenWouldBlockThenEndOfFile() throws {
        let pair = SocketPair()
        let buffer = EventBuffer()
        #expect(try buffer.read(from: pair.left) == .wouldBlock)
        #expect(buffer.isEmpty)
        let data = EBFixture.pattern(100, seed: 70)
        data.withUnsafeBytes { _ = write(pair.right, $0.baseAddress, $0.count) }
        #expect(try buffer.read(from: pair.left, maxBytes: 30) == .transferred(30))
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(data[0..<30])) == nil)
        #expect(try buffer.read(from: pair.left) == .transferred(70))
        #expect(try EBFixture.difference(EBFixture.contents(buffer), data) == nil)
        #expect(try buffer.read(from: pair.left) == .wouldBlock)
        pair.closeRight()
        #expect(try buffer.read(from: pair.left) == .endOfFile)
        #expect(try buffer.read(from: pair.left) == .endOfFile)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), data) == nil)
    }

    @Test func readNeverTakesMoreThanMaxBytes() throws {
        let pair = SocketPair()
        let data = EBFixture.pattern(50_000, seed: 71)
        data.withUnsafeBytes { _ = write(pair.right, $0.baseAddress, $0.count) }
        let buffer = EventBuffer()
        // A buffer whose last segment has a little room left, so the read
        // is scattered over two pieces.
        let head = EBFixture.pattern(4_000, seed: 72)
        try buffer.add(head)
        var received = 0
        var random = EBFixture.Random(seed: 73)
        while received < data.count {
            let limit = random.next(1...3_000)
            let result = try buffer.read(from: pair.left, maxBytes: limit)
            guard case .transferred(let n) = result else {
                Issue.record("read returned \(result) with \(data.count - received) bytes waiting")
                break
            }
            #expect(n <= limit)
            #expect(n == min(limit, data.count - received), "a socket with enough bytes fills the request")
            received += n
            #expect(buffer.count == head.count + received)
        }
        #expect(try EBFixture.difference(EBFixture.contents(buffer), head + data) == nil)
    }

    @Test func readOfZeroBytesReadsNothing() throws {
        let pair = SocketPair()
        pair.send("waiting")
        let buffer = EventBuffer()
        #expect(try buffer.read(from: pair.left, maxBytes: 0) == .wouldBlock)
        #expect(buffer.isEmpty)
        #expect(try buffer.read(from: pair.left) == .transferred(7))
        #expect(try buffer.string() == "waiting")
    }

    /// libevent caps a read at what the socket holds (or 4096 bytes) when
    /// asked for more; asking for "as much as there is" must not crash.
    @Test func readWithAnUnboundedMaxBytesReadsWhatIsThere() async {
        await #expect(processExitsWith: .success) {
            let pair = SocketPair()
            pair.send("ten bytes!")
            let buffer = EventBuffer()
            let result = try? buffer.read(from: pair.left, maxBytes: Int.max)
            exit(result == .transferred(10) && buffer.count == 10 ? 0 : 3)
        }
    }

    @Test func readFromAPipe() throws {
        let pipe = EBFixture.makePipe()
        defer { close(pipe.read) }
        let buffer = EventBuffer()
        _ = "through a pipe".withCString { write(pipe.write, $0, 14) }
        close(pipe.write)
        #expect(try buffer.read(from: pipe.read) == .transferred(14))
        #expect(try buffer.read(from: pipe.read) == .endOfFile)
        #expect(try buffer.string() == "through a pipe")
    }

    @Test func readFromAResetConnectionIsECONNRESET() throws {
        let (client, server) = try EBFixture.tcpPair()
        defer { close(client) }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        #expect(setsockopt(server, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size)) == 0)
        close(server)
        EBFixture.setNonBlocking(client)
        #expect(EBFixture.wait(client, for: POLLIN | POLLERR | POLLHUP))
        let buffer = EventBuffer()
        EBFixture.expectSystemError(ECONNRESET) { _ = try buffer.read(from: client) }
        #expect(buffer.isEmpty)
    }

    @Test func readAndWriteOnADescriptorThatIsNotOpenAreEBADF() throws {
        let buffer = EventBuffer()
        EBFixture.expectSystemError(EBADF) { _ = try buffer.read(from: -1) }
        EBFixture.expectSystemError(EBADF) { _ = try buffer.read(from: Int32.max) }
        #expect(buffer.isEmpty)
        try buffer.add("data")
        EBFixture.expectSystemError(EBADF) { _ = try buffer.write(to: -1) }
        EBFixture.expectSystemError(EBADF) { _ = try buffer.write(to: Int32.max) }
        #expect(try buffer.string() == "data", "a failed write removes nothing")
    }

    @Test func theErrorNamesTheCallAndDescriptor() throws {
        let buffer = EventBuffer()
        let error = #expect(throws: BufferError.self) { _ = try buffer.read(from: Int32.max) }
        guard case .system(let failure)? = error else {
            Issue.record("expected a system error, got \(String(describing: error))")
            return
        }
        #expect(failure.fd == Int32.max)
        #expect(failure.call.contains("read"))
        #expect(BufferError.system(failure).description.contains("\(Int32.max)"))
    }

    // MARK: writing

    @Test func writeAtMostWritesAtMostMaxBytesAndRemovesExactlyThat() throws {
        let pair = SocketPair()
        let buffer = EventBuffer()
        let data = EBFixture.pattern(1_000, seed: 74)
        try buffer.add(data)
        #expect(try buffer.write(to: pair.left, maxBytes: 300) == .transferred(300))
        #expect(buffer.count == 700)
        #expect(EBFixture.difference(EBFixture.readExactly(300, from: pair.right), Array(data[0..<300])) == nil)
        #expect(pair.drain(pair.right) == 0)
        #expect(try buffer.write(to: pair.left, maxBytes: 0) == .wouldBlock)
        #expect(buffer.count == 700)
        #expect(try buffer.write(to: pair.left, maxBytes: 5_000) == .transferred(700))
        #expect(buffer.isEmpty)
        #expect(EBFixture.difference(EBFixture.readExactly(700, from: pair.right), Array(data[300...])) == nil)
        #expect(try buffer.write(to: pair.left) == .wouldBlock, "nothing to write")
    }

    @Test func writeOverManySegmentsAndLimitsKeepsTheStream() throws {
        let pair = SocketPair()
        // Far more segments than one gathered write takes (128).
        let pieces = (0..<400).map { EBFixture.pattern(37 + $0 % 50, seed: UInt64($0)) }
        let (buffer, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        let expected = pieces.flatMap { $0 }
        var received: [UInt8] = []
        var random = EBFixture.Random(seed: 75)
        while !buffer.isEmpty {
            let before = buffer.count
            let limit = random.next(1...4_000)
            guard case .transferred(let n) = try buffer.write(to: pair.left, maxBytes: limit) else {
                Issue.record("a write to an empty socket did not transfer")
                break
            }
            #expect(n <= limit && buffer.count == before - n)
            received += EBFixture.readExactly(n, from: pair.right)
        }
        #expect(EBFixture.difference(received, expected) == nil)
    }

    @Test func writeToAFullSocketWouldBlockAndRemovesNothing() throws {
        let pair = SocketPair()
        let filled = pair.fill(pair.left)
        #expect(filled > 0)
        let buffer = EventBuffer()
        try buffer.add("pending")
        #expect(try buffer.write(to: pair.left) == .wouldBlock)
        #expect(try buffer.string() == "pending")
        pair.drain(pair.right)
        #expect(EBFixture.wait(pair.left, for: POLLOUT))
        #expect(try buffer.write(to: pair.left) == .transferred(7))
        #expect(EBFixture.difference(EBFixture.readExactly(7, from: pair.right), Array("pending".utf8)) == nil)
    }

    @Test func aPartialWriteRemovesOnlyWhatWasWritten() throws {
        let pair = SocketPair()
        let buffer = EventBuffer()
        let data = EBFixture.pattern(2 * 1024 * 1024, seed: 76)
        try buffer.add(data)
        guard case .transferred(let n) = try buffer.write(to: pair.left) else {
            Issue.record("nothing was written to an empty socket")
            return
        }
        #expect(n < data.count, "2 MiB does not fit in a socket buffer")
        #expect(buffer.count == data.count - n)
        #expect(try buffer.copyOut(count: 100) == Array(data[n..<n + 100]))
        #expect(EBFixture.difference(EBFixture.readExactly(n, from: pair.right), Array(data[0..<n])) == nil)
    }

    @Test func writeToAPipe() throws {
        let pipe = EBFixture.makePipe()
        defer { close(pipe.read) }
        defer { close(pipe.write) }
        let (buffer, memories) = try EBFixture.segmented(["into ", "a ", "pipe"])
        defer { withExtendedLifetime(memories) {} }
        #expect(try buffer.write(to: pipe.write) == .transferred(11))
        #expect(EBFixture.difference(EBFixture.readExactly(11, from: pipe.read), Array("into a pipe".utf8)) == nil)
        // The same buffer then writes to a socket again.
        let pair = SocketPair()
        try buffer.add("socket")
        #expect(try buffer.write(to: pair.left) == .transferred(6))
        #expect(EBFixture.difference(EBFixture.readExactly(6, from: pair.right), Array("socket".utf8)) == nil)
    }

    /// The peer of the socket is closed: EPIPE, and no SIGPIPE (sendmsg with
    /// MSG_NOSIGNAL). In a process of its own, which restores the default
    /// SIGPIPE disposition for itself: a signal would end only that process.
    @Test func writingToASocketWhosePeerClosedIsEPIPE() async {
        await #expect(processExitsWith: .success) {
            signal(SIGPIPE, SIG_DFL)
            let pair = SocketPair()
            pair.closeRight()
            let buffer = EventBuffer()
            try! buffer.add("lost")
            do {
                _ = try buffer.write(to: pair.left)
                exit(2)
            } catch {
                guard EBFixture.systemErrno(error) == EPIPE, buffer.count == 4 else { exit(3) }
            }
            exit(0)
        }
    }

    /// The same with a pipe whose read end is closed: write(2) has no
    /// MSG_NOSIGNAL, so the buffer holds SIGPIPE off around it.
    @Test func writingToAPipeWhoseReadEndClosedIsEPIPE() async {
        await #expect(processExitsWith: .success) {
            signal(SIGPIPE, SIG_DFL)
            let pipe = EBFixture.makePipe()
            close(pipe.read)
            let buffer = EventBuffer()
            try! buffer.add("lost")
            for _ in 0..<3 {
                do {
                    _ = try buffer.write(to: pipe.write)
                    exit(2)
                } catch {
                    guard EBFixture.systemErrno(error) == EPIPE, buffer.count == 4 else { exit(3) }
                }
            }
            // No SIGPIPE is left pending to strike later.
            var pending = sigset_t()
            sigpending(&pending)
            guard sigismember(&pending, SIGPIPE) == 0 else { exit(4) }
            close(pipe.write)
            exit(0)
        }
    }

    // MARK: large transfers

    /// Several megabytes through a socket pair, written by this thread with
    /// non-blocking writes and read by another into a second buffer.
    @Test func severalMegabytesArriveIntact() throws {
        let pair = SocketPair()
        let data = EBFixture.pattern(8 * 1024 * 1024, seed: 77)
        let source = EventBuffer()
        var offset = 0
        var random = EBFixture.Random(seed: 78)
        while offset < data.count {
            let n = min(random.next(1...70_000), data.count - offset)
            try source.add(data[offset..<offset + n])
            offset += n
        }
        let sink = EventBuffer()
        let readerDone = Box<Bool>(false)
        let reader = TestThread {
            let deadline = now() + .seconds(60)
            while now() < deadline {
                guard EBFixture.wait(pair.right, for: POLLIN, timeoutMilliseconds: 1_000) else { continue }
                guard let result = try? sink.read(from: pair.right, maxBytes: 65_536) else { break }
                if result == .endOfFile {
                    readerDone.value = true
                    break
                }
            }
        }
        let deadline = now() + .seconds(60)
        while !source.isEmpty && now() < deadline {
            if try source.write(to: pair.left) == .wouldBlock { EBFixture.wait(pair.left, for: POLLOUT) }
        }
        #expect(source.isEmpty)
        shutdown(pair.left, Int32(SHUT_WR))
        reader.join(timeout: .seconds(60))
        #expect(readerDone.value == true)
        #expect(sink.count == data.count)
        #expect(try EBFixture.difference(EBFixture.contents(sink), data) == nil)
    }

    @Test func readingUsesFreeRoomAndNewSegmentsAsNeeded() throws {
        let pair = SocketPair()
        let buffer = EventBuffer()
        let data = EBFixture.pattern(200_000, seed: 79)
        let writer = TestThread {
            var offset = 0
            let deadline = now() + .seconds(30)
            while offset < data.count && now() < deadline {
                EBFixture.wait(pair.right, for: POLLOUT)
                let n = data.withUnsafeBytes { write(pair.right, $0.baseAddress! + offset, min(10_000, $0.count - offset)) }
                if n > 0 { offset += n }
            }
        }
        let deadline = now() + .seconds(30)
        while buffer.count < data.count && now() < deadline {
            if try buffer.read(from: pair.left, maxBytes: 9_000) == .wouldBlock {
                EBFixture.wait(pair.left, for: POLLIN)
            }
        }
        writer.join()
        #expect(try EBFixture.difference(EBFixture.contents(buffer), data) == nil)
    }
}
