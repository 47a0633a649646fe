// Freezing either end of a buffer (evbuffer_freeze/evbuffer_unfreeze).
import EventBuffers
import EventTestSupport
import Glibc
import Testing

@Suite struct EventBufferFreezeTests {
    /// Runs `body`, which must be refused because the given end is frozen.
    private func expectFrozen(
        end: Bool, _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("\(what) was allowed on a frozen \(end ? "end" : "start")", sourceLocation: sourceLocation)
        } catch {
            guard case .frozen(let frozenEnd, _)? = error as? BufferError else {
                Issue.record("\(what) threw \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(frozenEnd == end, "\(what)", sourceLocation: sourceLocation)
        }
    }

    @Test func aFrozenEndRefusesEverythingThatAdds() throws {
        let buffer = EventBuffer()
        try buffer.add("kept")
        let log = EBChangeLog()
        buffer.addCallback { _, change in log.append(change) }
        buffer.freeze(end: true)
        let other = EventBuffer()
        try other.add("other")
        let memory = EBFixture.LentMemory(Array("ref".utf8))
        let file = try EBTempFile("file bytes")
        let fd = try file.open()
        defer { close(fd) }
        let segment = try FileSegment(fd: fd)
        let pair = SocketPair()
        pair.send("socket bytes")
        expectFrozen(end: true, "add bytes") { try buffer.add(Array("x".utf8)) }
        expectFrozen(end: true, "add string") { try buffer.add("x") }
        expectFrozen(end: true, "add raw") { try Array("x".utf8).withUnsafeBytes { try buffer.add($0) } }
        expectFrozen(end: true, "add reference") { try buffer.add(reference: memory.base, count: 3) }
        expectFrozen(end: true, "add file") { try buffer.add(file: segment) }
        expectFrozen(end: true, "add buffer") { try buffer.add(buffer: other) }
        expectFrozen(end: true, "add buffer reference") { try buffer.add(bufferReference: other) }
        expectFrozen(end: true, "move into") { try other.move(upTo: 2, into: buffer) }
        expectFrozen(end: true, "reserve") { _ = try buffer.reserve(10) }
        expectFrozen(end: true, "read") { _ = try buffer.read(from: pair.left) }
        #expect(try buffer.string() == "kept")
        #expect(try other.string() == "other", "a refused move takes nothing from its source")
        #expect(log.all.isEmpty)
        // The socket's bytes are still there for later.
        #expect(EBFixture.wait(pair.left, for: POLLIN, timeoutMilliseconds: 0))
        // The start still works: removing, and prepending (libevent checks
        // the start for prepends).
        try buffer.prepend(Array(">".utf8))
        try buffer.drain(1)
        #expect(try buffer.remove(upTo: 1) == Array("k".utf8))
        #expect(try buffer.string() == "ept")
        buffer.unfreeze(end: true)
        try buffer.add("!")
        #expect(try buffer.read(from: pair.left) == .transferred(12))
        #expect(try buffer.string() == "ept!socket bytes")
    }

    @Test func aFrozenStartRefusesEverythingThatRemoves() throws {
        let buffer = EventBuffer()
        try buffer.add("line one\nline two\n")
        let log = EBChangeLog()
        buffer.addCallback { _, change in log.append(change) }
        buffer.freeze(end: false)
        let other = EventBuffer()
        let pair = SocketPair()
        var space = [UInt8](repeating: 0, count: 4)
        expectFrozen(end: false, "drain") { try buffer.drain(1) }
        expectFrozen(end: false, "remove into") { _ = try space.withUnsafeMutableBytes { try buffer.remove(into: $0) } }
        expectFrozen(end: false, "remove up to") { _ = try buffer.remove(upTo: 1) }
        expectFrozen(end: false, "read line") { _ = try buffer.readLine(.lf) }
        expectFrozen(end: false, "write") { _ = try buffer.write(to: pair.left) }
        expectFrozen(end: false, "move out") { try buffer.move(upTo: 1, into: other) }
        expectFrozen(end: false, "add buffer from") { try other.add(buffer: buffer) }
        expectFrozen(end: false, "prepend") { try buffer.prepend(Array("x".utf8)) }
        expectFrozen(end: false, "prepend buffer") { try buffer.prepend(buffer: EventBuffer()) }
        #expect(try buffer.string() == "line one\nline two\n")
        #expect(other.isEmpty)
        #expect(log.all.isEmpty)
        #expect(pair.drain(pair.right) == 0, "nothing was written")
        // Reading in place and adding at the end still work.
        #expect(try buffer.copyOut(count: 4) == Array("line".utf8))
        #expect(buffer.search(Array("two".utf8)) == EventBuffer.Position(14))
        #expect(try buffer.peek().reduce(0) { $0 + $1.count } == 18)
        try buffer.add("line three\n")
        #expect(buffer.count == 29)
        buffer.unfreeze(end: false)
        #expect(try buffer.readLineString(.lf) == "line one")
        #expect(try buffer.write(to: pair.left) == .transferred(20))
        #expect(EBFixture.difference(EBFixture.readExactly(20, from: pair.right), Array("line two\nline three\n".utf8)) == nil)
    }

    @Test func bothEndsFreezeIndependently() throws {
        let buffer = EventBuffer()
        try buffer.add("ab")
        buffer.freeze(end: true)
        buffer.freeze(end: false)
        expectFrozen(end: true, "add") { try buffer.add("c") }
        expectFrozen(end: false, "drain") { try buffer.drain(1) }
        buffer.unfreeze(end: false)
        try buffer.drain(1)
        expectFrozen(end: true, "add") { try buffer.add("c") }
        buffer.unfreeze(end: true)
        try buffer.add("c")
        #expect(try buffer.string() == "bc")
    }

    @Test func theErrorNamesTheRefusedCall() throws {
        let buffer = EventBuffer()
        buffer.freeze(end: true)
        let error = #expect(throws: BufferError.self) { try buffer.add("x") }
        #expect(error == .frozen(end: true, call: "EventBuffer.add"))
        #expect(error?.description.contains("EventBuffer.add") == true)
        #expect(error?.description.contains("end") == true)
    }
}
