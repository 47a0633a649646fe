// Moving bytes between buffers without copying: move(upTo:into:)
// (evbuffer_remove_buffer), add(buffer:) (evbuffer_add_buffer) and
// prepend(buffer:) (evbuffer_prepend_buffer).
import EventBuffers
import Glibc
import Testing

@Suite struct EventBufferMoveTests {
    /// Start addresses of the buffer's segments, as peek reports them.
    private func bases(_ buffer: EventBuffer) throws -> [UnsafeRawPointer?] {
        try buffer.peek().map { $0.baseAddress }
    }

    @Test func moveUpToAWholeSegmentBoundaryMovesSegmentsWithoutCopying() throws {
        let pieces = [EBFixture.pattern(100, seed: 1), EBFixture.pattern(200, seed: 2), EBFixture.pattern(300, seed: 3)]
        let (source, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        let destination = EventBuffer()
        #expect(try source.move(upTo: 300, into: destination) == 300)
        #expect(destination.count == 300 && source.count == 300)
        // The destination reads the very memory that was lent: no copy.
        #expect(try bases(destination) == [memories[0].base, memories[1].base])
        #expect(try destination.peek().map(\.count) == [100, 200])
        #expect(try bases(source) == [memories[2].base])
        #expect(try EBFixture.difference(EBFixture.contents(destination), pieces[0] + pieces[1]) == nil)
        #expect(try EBFixture.difference(EBFixture.contents(source), pieces[2]) == nil)
    }

    @Test func moveSplitsAtMostOneSegment() throws {
        let pieces = [EBFixture.pattern(100, seed: 4), EBFixture.pattern(200, seed: 5), EBFixture.pattern(300, seed: 6)]
        let (source, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        let destination = EventBuffer()
        #expect(try source.move(upTo: 250, into: destination) == 250)
        // 100 whole, then the first 150 of the second segment, still in place.
        #expect(try destination.peek().map(\.count) == [100, 150])
        #expect(try bases(destination) == [memories[0].base, memories[1].base])
        // The rest of the split segment stays, also in place.
        #expect(try source.peek().map(\.count) == [50, 300])
        #expect(try bases(source) == [memories[1].base + 150, memories[2].base])
        #expect(try EBFixture.difference(EBFixture.contents(destination), pieces[0] + pieces[1][0..<150]) == nil)
        #expect(try EBFixture.difference(EBFixture.contents(source), Array(pieces[1][150...]) + pieces[2]) == nil)
    }

    @Test func moveOfMoreThanTheLengthMovesEverythingAndZeroMovesNothing() throws {
        let source = EventBuffer()
        let destination = EventBuffer()
        try destination.add("head:")
        try source.add("payload")
        #expect(try source.move(upTo: 0, into: destination) == 0)
        #expect(try source.move(upTo: -5, into: destination) == 0)
        #expect(source.count == 7 && destination.count == 5)
        #expect(try source.move(upTo: 1_000, into: destination) == 7)
        #expect(source.isEmpty)
        #expect(try destination.string() == "head:payload")
        #expect(try source.move(upTo: 10, into: destination) == 0)
        #expect(destination.count == 12)
    }

    /// After a split the two buffers share one piece of memory; adding to
    /// either must not overwrite the other's bytes.
    @Test func addingAfterASplitMoveKeepsBothBuffersIntact() throws {
        let source = EventBuffer()
        let head = EBFixture.pattern(1_000, seed: 7)
        try source.add(head)
        let destination = EventBuffer()
        #expect(try source.move(upTo: 400, into: destination) == 400)
        let more = EBFixture.pattern(3_000, seed: 8)
        try destination.add(more)
        try source.add(Array(more.reversed()))
        #expect(try EBFixture.difference(EBFixture.contents(destination), Array(head[0..<400]) + more) == nil)
        #expect(try EBFixture.difference(EBFixture.contents(source), Array(head[400...]) + more.reversed()) == nil)
        // Draining one side leaves the other's bytes as they were.
        try source.drain(source.count)
        try destination.add("tail")
        #expect(try EBFixture.difference(EBFixture.contents(destination), Array(head[0..<400]) + more + Array("tail".utf8)) == nil)
    }

    @Test func manyRandomMovesBetweenTwoBuffersKeepTheStream() throws {
        let stream = EBFixture.pattern(300_000, seed: 9)
        var random = EBFixture.Random(seed: 99)
        let first = EventBuffer()
        let second = EventBuffer()
        let sink = EventBuffer()
        var offset = 0
        while offset < stream.count || !first.isEmpty || !second.isEmpty {
            if offset < stream.count {
                let n = min(random.next(1...5_000), stream.count - offset)
                try first.add(stream[offset..<offset + n])
                offset += n
            }
            try first.move(upTo: random.next(0...6_000), into: second)
            try second.move(upTo: random.next(0...6_000), into: sink)
            if offset == stream.count {
                try first.move(upTo: first.count, into: second)
                try second.move(upTo: second.count, into: sink)
            }
        }
        #expect(sink.count == stream.count)
        #expect(try EBFixture.difference(EBFixture.contents(sink), stream) == nil)
    }

    @Test func addBufferMovesEverythingToTheEnd() throws {
        let pieces = [Array("one,".utf8), Array("two,".utf8)]
        let (source, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        try source.add("three")
        let destination = EventBuffer()
        try destination.add("zero,")
        try destination.add(buffer: source)
        #expect(source.isEmpty && source.count == 0)
        #expect(try destination.string() == "zero,one,two,three")
        // Referenced segments moved, not copied.
        let moved = try bases(destination)
        #expect(moved.count == 4)
        #expect(moved[1] == memories[0].base && moved[2] == memories[1].base)
        // Both stay usable, and later bytes land after the moved ones.
        try destination.add("!")
        try source.add("new")
        #expect(try destination.string() == "zero,one,two,three!")
        #expect(try source.string() == "new")
        // Adding an empty buffer changes nothing.
        try destination.add(buffer: EventBuffer())
        #expect(destination.count == 19)
    }

    @Test func addBufferIntoAnEmptyBufferAndBackAgain() throws {
        let a = EventBuffer()
        let b = EventBuffer()
        let data = EBFixture.pattern(50_000, seed: 11)
        try a.add(data)
        for _ in 0..<5 {
            try b.add(buffer: a)
            #expect(a.isEmpty && b.count == data.count)
            try a.add(buffer: b)
            #expect(b.isEmpty && a.count == data.count)
        }
        #expect(try EBFixture.difference(EBFixture.contents(a), data) == nil)
    }

    @Test func prependBufferMovesEverythingToTheFront() throws {
        let (source, memories) = try EBFixture.segmented(["GET ", "/index"])
        defer { withExtendedLifetime(memories) {} }
        try source.add(" HTTP")
        let destination = EventBuffer()
        try destination.add("/1.1\r\n")
        try destination.prepend(buffer: source)
        #expect(source.isEmpty)
        #expect(try destination.string() == "GET /index HTTP/1.1\r\n")
        #expect(try bases(destination).prefix(2) == [memories[0].base, memories[1].base])
        try destination.prepend(buffer: EventBuffer())
        #expect(destination.count == 21)
        // Into an empty buffer.
        let empty = EventBuffer()
        try empty.prepend(buffer: destination)
        #expect(destination.isEmpty)
        #expect(try empty.string() == "GET /index HTTP/1.1\r\n")
    }

    /// A segment moved whole keeps its free room: the destination's next
    /// small add goes into it (as evbuffer_remove_buffer followed by
    /// evbuffer_add does), even while the source still holds other segments.
    @Test func aMovedSegmentKeepsTakingBytesInTheDestination() throws {
        let source = EventBuffer()
        try source.add(EBFixture.pattern(100))
        let memory = EBFixture.LentMemory(EBFixture.pattern(50, seed: 2))
        try source.add(reference: memory.base, count: 50)
        let destination = EventBuffer()
        #expect(try source.move(upTo: 100, into: destination) == 100)
        try destination.add("tail")
        #expect(try destination.peek().count == 1, "the add went to a new segment")
        #expect(try EBFixture.difference(EBFixture.contents(destination), EBFixture.pattern(100) + Array("tail".utf8)) == nil)
        #expect(try EBFixture.difference(EBFixture.contents(source), EBFixture.pattern(50, seed: 2)) == nil)
    }

    @Test func aBufferCannotBeItsOwnSourceOrDestination() throws {
        let buffer = EventBuffer()
        try buffer.add("same")
        #expect(throws: BufferError.sameBuffer(call: "EventBuffer.add(buffer:)")) { try buffer.add(buffer: buffer) }
        #expect(throws: BufferError.sameBuffer(call: "EventBuffer.prepend(buffer:)")) {
            try buffer.prepend(buffer: buffer)
        }
        #expect(throws: BufferError.sameBuffer(call: "EventBuffer.move(upTo:into:)")) {
            try buffer.move(upTo: 2, into: buffer)
        }
        #expect(throws: BufferError.sameBuffer(call: "EventBuffer.add(bufferReference:)")) {
            try buffer.add(bufferReference: buffer)
        }
        #expect(try buffer.string() == "same")
    }
}
