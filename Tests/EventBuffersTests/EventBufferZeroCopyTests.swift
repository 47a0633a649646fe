// Memory added by reference (evbuffer_add_reference) and buffers added by
// reference (evbuffer_add_buffer_reference): no copy, and a cleanup that runs
// exactly once, when no buffer refers to the memory any more.
import EventBuffers
import EventTestSupport
import Glibc
import Testing

@Suite struct EventBufferZeroCopyTests {
    @Test func referencedMemoryIsReadInPlace() throws {
        let memory = EBFixture.LentMemory(EBFixture.pattern(5_000))
        let buffer = EventBuffer()
        try buffer.add("<")
        try buffer.add(reference: memory.base, count: 5_000)
        try buffer.add(">")
        #expect(buffer.count == 5_002)
        let pieces = try buffer.peek()
        #expect(pieces.map(\.count) == [1, 5_000, 1])
        #expect(pieces[1].baseAddress == memory.base)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array("<".utf8) + EBFixture.pattern(5_000) + Array(">".utf8)) == nil)
    }

    @Test func cleanupRunsOnceWhenTheBufferIsDrained() throws {
        let memory = EBFixture.LentMemory(EBFixture.pattern(1_000))
        let cleanups = Counter()
        let buffer = EventBuffer()
        try buffer.add(reference: memory.base, count: 1_000) { cleanups.increment() }
        try buffer.add("after")
        #expect(cleanups.value == 0)
        try buffer.drain(999)
        #expect(cleanups.value == 0, "one referenced byte is still in the buffer")
        #expect(try buffer.copyOut(count: 1) == [EBFixture.pattern(1_000)[999]])
        try buffer.drain(1)
        #expect(cleanups.value == 1)
        try buffer.drain(5)
        #expect(buffer.isEmpty)
        withExtendedLifetime(buffer) {}
        #expect(cleanups.value == 1)
    }

    @Test func cleanupRunsWhenTheBufferIsFreed() throws {
        let memory = EBFixture.LentMemory(EBFixture.pattern(64))
        let cleanups = Counter()
        var buffer: EventBuffer? = EventBuffer()
        try buffer?.add(reference: memory.base, count: 64) { cleanups.increment() }
        try buffer?.drain(10)
        #expect(cleanups.value == 0)
        buffer = nil
        #expect(cleanups.value == 1)
    }

    @Test func cleanupWaitsForTheBufferTheBytesMovedTo() throws {
        let memory = EBFixture.LentMemory(EBFixture.pattern(2_000))
        let cleanups = Counter()
        var source: EventBuffer? = EventBuffer()
        try source?.add(reference: memory.base, count: 2_000) { cleanups.increment() }
        let destination = EventBuffer()
        try destination.add(buffer: source!)
        source = nil
        #expect(cleanups.value == 0)
        #expect(try destination.peek()[0].baseAddress == memory.base)
        let mover = EventBuffer()
        try destination.move(upTo: 2_000, into: mover)
        #expect(cleanups.value == 0)
        #expect(try EBFixture.difference(EBFixture.contents(mover), EBFixture.pattern(2_000)) == nil)
        try mover.drain(2_000)
        #expect(cleanups.value == 1)
        withExtendedLifetime(destination) {}
        #expect(cleanups.value == 1)
    }

    @Test func aSegmentSplitBetweenTwoBuffersIsCleanedUpAfterBoth() throws {
        for drainSourceFirst in [true, false] {
            let memory = EBFixture.LentMemory(EBFixture.pattern(1_000))
            let cleanups = Counter()
            let source = EventBuffer()
            try source.add(reference: memory.base, count: 1_000) { cleanups.increment() }
            let destination = EventBuffer()
            #expect(try source.move(upTo: 300, into: destination) == 300)
            #expect(try destination.peek()[0].baseAddress == memory.base)
            #expect(try source.peek()[0].baseAddress == memory.base + 300)
            let (first, second) = drainSourceFirst ? (source, destination) : (destination, source)
            try first.drain(first.count)
            #expect(cleanups.value == 0)
            try second.drain(second.count / 2)
            #expect(cleanups.value == 0)
            try second.drain(second.count)
            #expect(cleanups.value == 1)
        }
    }

    @Test func addingAZeroLengthReferenceStillCleansUpOnce() throws {
        let memory = EBFixture.LentMemory([1])
        let cleanups = Counter()
        var buffer: EventBuffer? = EventBuffer()
        try buffer?.add(reference: memory.base, count: 0) { cleanups.increment() }
        #expect(buffer?.count == 0)
        buffer = nil
        #expect(cleanups.value == 1)
    }

    /// libevent's evbuffer_add_reference on a frozen buffer fails without
    /// calling the cleanup: the caller still owns the memory and frees it.
    @Test func aRefusedReferenceDoesNotRunTheCleanup() throws {
        let memory = EBFixture.LentMemory(EBFixture.pattern(16))
        let cleanups = Counter()
        let buffer = EventBuffer()
        buffer.freeze(end: true)
        #expect(throws: BufferError.self) {
            try buffer.add(reference: memory.base, count: 16) { cleanups.increment() }
        }
        #expect(buffer.count == 0)
        #expect(cleanups.value == 0, "the cleanup ran although the memory was never added")
    }

    // MARK: buffer references

    @Test func addBufferReferenceLeavesTheSourceUnchangedAndSharesItsBytes() throws {
        let source = EventBuffer()
        let data = EBFixture.pattern(10_000, seed: 50)
        try source.add(data)
        let sourcePieces = try source.peek()
        let destination = EventBuffer()
        try destination.add("prefix")
        try destination.add(bufferReference: source)
        #expect(source.count == 10_000)
        #expect(try EBFixture.difference(EBFixture.contents(source), data) == nil)
        #expect(try source.peek().map(\.baseAddress) == sourcePieces.map(\.baseAddress))
        #expect(destination.count == 10_006)
        #expect(try EBFixture.difference(EBFixture.contents(destination), Array("prefix".utf8) + data) == nil)
        // No copy: the destination reads the source's segments.
        let shared = try destination.peek(from: 6)
        #expect(shared.map(\.baseAddress) == sourcePieces.map(\.baseAddress))
    }

    @Test func appendingToEitherSideOfABufferReferenceLeavesTheOtherAlone() throws {
        // A source whose only segment has free room after its data.
        let source = EventBuffer()
        try source.add("shared")
        let destination = EventBuffer()
        try destination.add(bufferReference: source)
        try source.add(" source-only")
        try destination.add(" destination-only")
        #expect(try source.string() == "shared source-only")
        #expect(try destination.string() == "shared destination-only")
        // Reserve/commit and read into free space too.
        let space = try destination.reserve(8)
        Array("+commit".utf8).withUnsafeBytes { space[0].copyMemory(from: $0) }
        try destination.commit(7)
        #expect(try source.string() == "shared source-only")
        #expect(try destination.string() == "shared destination-only+commit")
        let pair = SocketPair()
        pair.send("+read")
        #expect(try source.read(from: pair.left) == .transferred(5))
        #expect(try source.string() == "shared source-only+read")
        #expect(try destination.string() == "shared destination-only+commit")
        // Draining one does not drain the other.
        try source.drain(source.count)
        #expect(try destination.string() == "shared destination-only+commit")
    }

    @Test func sharedReferencedMemoryIsCleanedUpAfterEveryBufferLetGo() throws {
        for freeSourceFirst in [true, false] {
            let memory = EBFixture.LentMemory(EBFixture.pattern(4_096))
            let cleanups = Counter()
            var source: EventBuffer? = EventBuffer()
            try source?.add(reference: memory.base, count: 4_096) { cleanups.increment() }
            var destination: EventBuffer? = EventBuffer()
            try destination?.add(bufferReference: source!)
            var third: EventBuffer? = EventBuffer()
            try third?.add(bufferReference: destination!)
            #expect(try third?.peek()[0].baseAddress == memory.base)
            if freeSourceFirst {
                source = nil
                try destination?.drain(100)
            } else {
                destination = nil
                try source?.drain(100)
            }
            #expect(cleanups.value == 0)
            try third?.drain(4_000)
            #expect(cleanups.value == 0)
            #expect(try third.map { try EBFixture.contents($0) } == Array(EBFixture.pattern(4_096)[4_000...]))
            third = nil
            #expect(cleanups.value == 0)
            source = nil
            destination = nil
            #expect(cleanups.value == 1)
        }
    }

    @Test func addBufferReferenceOfAnEmptyBufferAddsNothing() throws {
        let destination = EventBuffer()
        try destination.add("x")
        try destination.add(bufferReference: EventBuffer())
        #expect(try destination.string() == "x")
    }
}
