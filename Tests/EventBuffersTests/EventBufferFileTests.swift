// File ranges in a buffer: FileSegment (evbuffer_file_segment_new),
// add(file:) (evbuffer_add_file_segment) and add(fileDescriptor:)
// (evbuffer_add_file): mapped when read, sent with sendfile when written.
import EventBackends
import EventBuffers
import EventTestSupport
import Glibc
import Testing

@Suite struct EventBufferFileTests {
    @Test func fileBytesCanBeCopiedOutPeekedAndRemoved() throws {
        let content = EBFixture.pattern(20_000, seed: 60)
        let file = try EBTempFile(content)
        let fd = try file.open()
        defer { close(fd) }
        let segment = try FileSegment(fd: fd)
        #expect(segment.length == 20_000 && segment.offset == 0 && !segment.closeOnFree)
        let buffer = EventBuffer()
        try buffer.add("[")
        try buffer.add(file: segment)
        try buffer.add("]")
        #expect(buffer.count == 20_002)
        #expect(try buffer.copyOut(count: 100, from: 9_000) == Array(content[8_999..<9_099]))
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array("[".utf8) + content + Array("]".utf8)) == nil)
        #expect(try EBFixture.difference(EBFixture.peekedBytes(buffer), Array("[".utf8) + content + Array("]".utf8)) == nil)
        #expect(try buffer.remove(upTo: 5_001) == Array("[".utf8) + content[0..<5_000])
        #expect(try buffer.pullUp(10)?.elementsEqual(content[5_000..<5_010]) == true)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(content[5_000...]) + Array("]".utf8)) == nil)
    }

    @Test func aRangeAtAnUnalignedOffsetReadsTheRightBytes() throws {
        let content = EBFixture.pattern(12_000, seed: 61)
        let file = try EBTempFile(content)
        let fd = try file.open()
        defer { close(fd) }
        let segment = try FileSegment(fd: fd, offset: 5_003, length: 3_000)
        let buffer = EventBuffer()
        try buffer.add(file: segment, offset: 101, length: 2_000)
        #expect(buffer.count == 2_000)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(content[5_104..<7_104])) == nil)
        // And the same range sent through a socket.
        let pair = SocketPair()
        #expect(try buffer.write(to: pair.left) == .transferred(2_000))
        #expect(buffer.isEmpty)
        #expect(EBFixture.difference(EBFixture.readExactly(2_000, from: pair.right), Array(content[5_104..<7_104])) == nil)
    }

    @Test func addFileSegmentRefusesARangePastTheSegment() throws {
        let file = try EBTempFile(EBFixture.pattern(100))
        let fd = try file.open()
        defer { close(fd) }
        let segment = try FileSegment(fd: fd, offset: 10, length: 50)
        let buffer = EventBuffer()
        #expect(throws: BufferError.self) { try buffer.add(file: segment, offset: 40, length: 11) }
        #expect(throws: BufferError.self) { try buffer.add(file: segment, offset: 51) }
        #expect(throws: BufferError.self) { try buffer.add(file: segment, offset: -1, length: 5) }
        #expect(buffer.isEmpty)
        try buffer.add(file: segment, offset: 40, length: 10)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(EBFixture.pattern(100)[50..<60])) == nil)
    }

    @Test func linesAndSearchesWorkOnFileBytes() throws {
        let file = try EBTempFile("first line\r\nsecond\nno end yet")
        let fd = try file.open()
        defer { close(fd) }
        let buffer = EventBuffer()
        try buffer.add("zero\n")
        try buffer.add(file: try FileSegment(fd: fd))
        #expect(buffer.search(Array("o\nfirst".utf8)) == EventBuffer.Position(3))
        #expect(buffer.search(Array("second".utf8)) == EventBuffer.Position(17))
        #expect(buffer.search(Array("missing".utf8)) == nil)
        #expect(buffer.searchEndOfLine(.crlfStrict)?.0 == EventBuffer.Position(15))
        #expect(try buffer.readLineString(.crlf) == "zero")
        #expect(try buffer.readLineString(.crlf) == "first line")
        #expect(try buffer.readLineString(.crlf) == "second")
        #expect(try buffer.readLineString(.crlf) == nil)
        try buffer.add("!\n")
        #expect(try buffer.readLineString(.lf) == "no end yet!")
        #expect(buffer.isEmpty)
    }

    @Test func anEmptyFileAddsNothing() throws {
        let file = try EBTempFile([UInt8]())
        let fd = try file.open()
        defer { close(fd) }
        let buffer = EventBuffer()
        try buffer.add(file: try FileSegment(fd: fd))
        #expect(buffer.isEmpty)
        #expect(try buffer.peek().isEmpty)
    }

    // MARK: writing with sendfile

    @Test func fileBytesWrittenToASocketArriveIntact() throws {
        let content = EBFixture.pattern(50_000, seed: 62)
        let file = try EBTempFile(content)
        let fd = try file.open()
        defer { close(fd) }
        let buffer = EventBuffer()
        try buffer.add("HEAD")
        try buffer.add(file: try FileSegment(fd: fd))
        try buffer.add("TAIL")
        let expected = Array("HEAD".utf8) + content + Array("TAIL".utf8)
        let pair = SocketPair()
        let reader = Box<[UInt8]>()
        let thread = TestThread { reader.value = EBFixture.readExactly(expected.count, from: pair.right) }
        var writes = 0
        let deadline = now() + .seconds(20)
        while !buffer.isEmpty && now() < deadline {
            let before = buffer.count
            switch try buffer.write(to: pair.left) {
            case .transferred(let n):
                #expect(n > 0 && n <= before)
                #expect(buffer.count == before - n)
                writes += 1
            case .wouldBlock:
                EBFixture.wait(pair.left, for: POLLOUT)
            case .endOfFile:
                Issue.record("a write reported end of file")
            }
        }
        #expect(buffer.isEmpty)
        thread.join()
        #expect(EBFixture.difference(reader.value ?? [], expected) == nil)
        // At least one write for the head, one sendfile, one for the tail.
        #expect(writes >= 3)
    }

    @Test func writeAtMostLimitsASendfile() throws {
        let content = EBFixture.pattern(10_000, seed: 63)
        let file = try EBTempFile(content)
        let fd = try file.open()
        defer { close(fd) }
        let buffer = EventBuffer()
        try buffer.add(file: try FileSegment(fd: fd))
        let pair = SocketPair()
        #expect(try buffer.write(to: pair.left, maxBytes: 1_000) == .transferred(1_000))
        #expect(buffer.count == 9_000)
        #expect(EBFixture.difference(EBFixture.readExactly(1_000, from: pair.right), Array(content[0..<1_000])) == nil)
        #expect(pair.drain(pair.right) == 0, "nothing beyond the limit was sent")
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(content[1_000...])) == nil)
    }

    /// A file segment several times larger than the socket buffer goes out
    /// in several non-blocking sendfile calls while the peer reads.
    @Test func aLargeFileGoesOutInSeveralNonBlockingWrites() throws {
        let content = EBFixture.pattern(6 * 1024 * 1024, seed: 64)
        let file = try EBTempFile(content)
        let fd = try file.open()
        defer { close(fd) }
        let buffer = EventBuffer()
        try buffer.add(file: try FileSegment(fd: fd))
        let pair = SocketPair()
        var sendBuffer: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(pair.left, SOL_SOCKET, SO_SNDBUF, &sendBuffer, &size)
        #expect(Int(sendBuffer) < content.count)
        let reader = Box<[UInt8]>()
        let thread = TestThread { reader.value = EBFixture.readExactly(content.count, from: pair.right) }
        var writes = 0
        var blocked = 0
        let deadline = now() + .seconds(60)
        while !buffer.isEmpty && now() < deadline {
            switch try buffer.write(to: pair.left) {
            case .transferred: writes += 1
            case .wouldBlock:
                blocked += 1
                EBFixture.wait(pair.left, for: POLLOUT)
            case .endOfFile: Issue.record("a write reported end of file")
            }
        }
        #expect(buffer.isEmpty)
        thread.join(timeout: .seconds(60))
        #expect(reader.value?.count == content.count)
        #expect(EBFixture.difference(reader.value ?? [], content) == nil)
        #expect(writes > 1)
    }

    /// An empty segment left by expand (or an unused reservation) before a
    /// file segment must not stop the file from being written.
    @Test func aFileSegmentAfterAnEmptyReservedSegmentIsStillWritten() throws {
        let content = EBFixture.pattern(3_000, seed: 65)
        let file = try EBTempFile(content)
        let fd = try file.open()
        defer { close(fd) }
        let buffer = EventBuffer()
        buffer.expand(100)
        try buffer.add(file: try FileSegment(fd: fd))
        #expect(buffer.count == 3_000)
        let pair = SocketPair()
        let result = try buffer.write(to: pair.left)
        #expect(result == .transferred(3_000))
        guard case .transferred(let n) = result else { return }
        #expect(EBFixture.difference(EBFixture.readExactly(n, from: pair.right), content[0..<n]) == nil)
    }

    /// sendfile(2) has no MSG_NOSIGNAL: writing a file segment to a socket
    /// whose peer is gone must still fail with EPIPE rather than kill the
    /// process with SIGPIPE (libevent leaves that to the application; the
    /// default disposition is what this library must cope with). The child
    /// process restores the default disposition for itself.
    @Test func sendingAFileToAClosedPeerIsEPIPENotSIGPIPE() async {
        await #expect(processExitsWith: .success) {
            signal(SIGPIPE, SIG_DFL)
            let file = try! EBTempFile(EBFixture.pattern(10_000))
            let fd = try! file.open()
            let pair = SocketPair()
            pair.closeRight()
            let buffer = EventBuffer()
            try! buffer.add(file: try! FileSegment(fd: fd, closeOnFree: true))
            do {
                _ = try buffer.write(to: pair.left)
                exit(2)
            } catch {
                exit(EBFixture.systemErrno(error) == EPIPE ? 0 : 3)
            }
        }
    }

    // MARK: descriptors closed on free

    @Test func addFileDescriptorClosesItWhenTheLastBufferLetsGo() throws {
        let content = EBFixture.pattern(8_000, seed: 66)
        let file = try EBTempFile(content)
        let fd = try file.open()
        let buffer = EventBuffer()
        try buffer.add(fileDescriptor: fd)
        #expect(buffer.count == 8_000)
        #expect(file.isOpen(fd))
        // Half moves to another buffer, a third buffer refers to the rest.
        let moved = EventBuffer()
        #expect(try buffer.move(upTo: 4_000, into: moved) == 4_000)
        let referring = EventBuffer()
        try referring.add(bufferReference: buffer)
        #expect(try EBFixture.difference(EBFixture.contents(moved), Array(content[0..<4_000])) == nil)
        try buffer.drain(buffer.count)
        #expect(file.isOpen(fd))
        try moved.drain(moved.count)
        #expect(file.isOpen(fd), "a buffer still refers to the file")
        #expect(try EBFixture.difference(EBFixture.contents(referring), Array(content[4_000...])) == nil)
        try referring.drain(3_999)
        #expect(file.isOpen(fd))
        try referring.drain(1)
        #expect(!file.isOpen(fd), "the descriptor outlived every buffer")
    }

    /// libevent frees a drained chain at once: the descriptor closes when
    /// its bytes are drained, even though other bytes stay in the buffer.
    @Test func addFileDescriptorClosesItOnceItsBytesAreDrained() throws {
        let file = try EBTempFile(EBFixture.pattern(500))
        let fd = try file.open()
        let buffer = EventBuffer()
        try buffer.add(fileDescriptor: fd)
        try buffer.add("after the file")
        try buffer.drain(499)
        #expect(file.isOpen(fd))
        try buffer.drain(1)
        #expect(!file.isOpen(fd), "the drained file segment still holds its descriptor")
        #expect(try buffer.string() == "after the file")
    }

    @Test func addFileDescriptorClosesItWhenTheBufferIsFreed() throws {
        let file = try EBTempFile(EBFixture.pattern(100))
        let fd = try file.open()
        var buffer: EventBuffer? = EventBuffer()
        try buffer?.add(fileDescriptor: fd, offset: 10, length: 20)
        #expect(buffer?.count == 20)
        #expect(try buffer.map { try EBFixture.contents($0) } == Array(EBFixture.pattern(100)[10..<30]))
        #expect(file.isOpen(fd))
        buffer = nil
        #expect(!file.isOpen(fd))
    }

    @Test func aSegmentWithoutCloseOnFreeLeavesTheDescriptorOpenAndRunsItsCleanupOnce() throws {
        let file = try EBTempFile(EBFixture.pattern(100))
        let fd = try file.open()
        defer { close(fd) }
        let cleanups = Counter()
        var buffer: EventBuffer? = EventBuffer()
        var other: EventBuffer? = EventBuffer()
        do {
            let segment = try FileSegment(fd: fd, cleanup: { cleanups.increment() })
            try buffer?.add(file: segment, length: 50)
            try other?.add(file: segment, offset: 50)
        }
        #expect(try other.map { try EBFixture.contents($0) } == Array(EBFixture.pattern(100)[50...]))
        buffer = nil
        #expect(cleanups.value == 0)
        other = nil
        #expect(cleanups.value == 1)
        #expect(file.isOpen(fd))
    }

    @Test func closeOnFreeSegmentSharedByTwoBuffersClosesOnce() throws {
        let file = try EBTempFile(EBFixture.pattern(100))
        let fd = try file.open()
        var first: EventBuffer? = EventBuffer()
        var second: EventBuffer? = EventBuffer()
        do {
            let segment = try FileSegment(fd: fd, closeOnFree: true)
            try first?.add(file: segment)
            try second?.add(file: segment, offset: 30)
        }
        first = nil
        #expect(file.isOpen(fd))
        #expect(try second.map { try EBFixture.contents($0) } == Array(EBFixture.pattern(100)[30...]))
        second = nil
        #expect(!file.isOpen(fd))
    }

    // MARK: refused segments

    @Test func aFileSegmentNeedsARegularFile() throws {
        let pipe = EBFixture.makePipe()
        defer {
            if EBFixture.target(of: pipe.read)?.hasPrefix("pipe:") == true { close(pipe.read) }
            close(pipe.write)
        }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: pipe.read) }
        let directory = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(directory >= 0)
        defer { close(directory) }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: directory) }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: -1) }
        // add(fileDescriptor:) reports it as a buffer error and leaves the
        // descriptor to its owner.
        let buffer = EventBuffer()
        #expect(throws: BufferError.self) { try buffer.add(fileDescriptor: pipe.read) }
        #expect(EBFixture.target(of: pipe.read)?.hasPrefix("pipe:") == true)
        #expect(buffer.isEmpty)
    }

    @Test func aFileSegmentMustLieWithinTheFile() throws {
        let file = try EBTempFile(EBFixture.pattern(1_000))
        let fd = try file.open()
        defer { if file.isOpen(fd) { close(fd) } }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: fd, offset: 1_001) }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: fd, offset: 0, length: 1_001) }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: fd, offset: 600, length: 401) }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: fd, offset: -1) }
        #expect(throws: SystemCallError.self) { try FileSegment(fd: fd, offset: 0, length: -1) }
        let whole = try FileSegment(fd: fd, offset: 600, length: 400)
        #expect(whole.length == 400)
        let rest = try FileSegment(fd: fd, offset: 1_000)
        #expect(rest.length == 0)
        let buffer = EventBuffer()
        #expect(throws: BufferError.self) { try buffer.add(fileDescriptor: fd, offset: 0, length: 2_000) }
        #expect(file.isOpen(fd))
    }
}
