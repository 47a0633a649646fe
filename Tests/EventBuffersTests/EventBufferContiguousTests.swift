// In-place access: pullUp (evbuffer_pullup), expand (evbuffer_expand),
// reserve/commit (evbuffer_reserve_space/evbuffer_commit_space), peek
// (evbuffer_peek), and segment reuse after draining.
import EventBuffers
import Glibc
import Testing

@Suite struct EventBufferContiguousTests {
    // MARK: pullUp

    @Test func pullUpOfMoreThanTheBufferHoldsIsNil() throws {
        let buffer = EventBuffer()
        #expect(try buffer.pullUp(1) == nil)
        try buffer.add("abc")
        #expect(try buffer.pullUp(4) == nil)
        #expect(try buffer.pullUp(-1) == nil)
        #expect(try buffer.string() == "abc")
        #expect(try buffer.pullUp(0)?.count == 0)
    }

    @Test func pullUpMakesBytesFromSeveralSegmentsContiguous() throws {
        let pieces = (0..<5).map { EBFixture.pattern(1_000 + $0 * 10, seed: UInt64($0 + 20)) }
        let all = pieces.flatMap { $0 }
        let (buffer, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        #expect(buffer.contiguousCount == 1_000)
        let pulled = try #require(try buffer.pullUp(2_500))
        #expect(pulled.count == 2_500)
        #expect(EBFixture.difference(pulled, all[0..<2_500]) == nil)
        #expect(buffer.contiguousCount >= 2_500)
        #expect(try buffer.peek(length: 2_500).count == 1)
        // Content and length are preserved.
        #expect(buffer.count == all.count)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), all) == nil)
        // Everything.
        let whole = try #require(try buffer.pullUp())
        #expect(EBFixture.difference(whole, all) == nil)
        #expect(buffer.contiguousCount == all.count)
        #expect(try buffer.peek().count == 1)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), all) == nil)
    }

    @Test func pullUpWithinTheFirstSegmentDoesNotCopy() throws {
        let (buffer, memories) = try EBFixture.segmented([EBFixture.pattern(500), EBFixture.pattern(10)])
        defer { withExtendedLifetime(memories) {} }
        let pulled = try #require(try buffer.pullUp(300))
        #expect(pulled.baseAddress == memories[0].base)
        #expect(pulled.count == 300)
    }

    @Test func pulledUpBufferKeepsWorking() throws {
        let buffer = EventBuffer()
        let other = EventBuffer()
        try buffer.add("0123")
        try other.add("4567")
        try buffer.add(buffer: other)
        try buffer.add("89")
        let pulled = try #require(try buffer.pullUp(6))
        #expect(String(decoding: pulled, as: UTF8.self) == "012345")
        try buffer.add("ab")
        try buffer.drain(3)
        #expect(try buffer.string() == "3456789ab")
        #expect(try buffer.readLineString(.lf) == nil)
    }

    // MARK: expand

    @Test func expandMakesRoomForOneContiguousAdd() throws {
        let buffer = EventBuffer()
        try buffer.add("x")
        buffer.expand(20_000)
        #expect(buffer.count == 1)
        let data = EBFixture.pattern(20_000)
        try buffer.add(data)
        // At most the old segment and the expanded one: the 20,000 bytes are
        // in one place.
        let pieces = try buffer.peek()
        #expect(pieces.count <= 2)
        #expect(pieces.last?.count ?? 0 >= 20_000)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), [UInt8(ascii: "x")] + data) == nil)
        // Expanding an empty buffer, then reserving, gives one piece.
        let empty = EventBuffer()
        empty.expand(10_000)
        #expect(empty.count == 0)
        let space = try empty.reserve(10_000)
        #expect(space.count == 1 && space[0].count >= 10_000)
    }

    /// An empty segment left by expand must not hide the bytes added after
    /// it: libevent drops trailing empty chains when a chain is inserted.
    @Test func contiguousCountAfterExpandAndAReference() throws {
        let memory = EBFixture.LentMemory(EBFixture.pattern(50))
        let buffer = EventBuffer()
        buffer.expand(100)
        try buffer.add(reference: memory.base, count: 50)
        #expect(buffer.count == 50)
        #expect(buffer.contiguousCount == 50)
        let pulled = try buffer.pullUp(50)
        #expect(pulled?.baseAddress == memory.base, "the first 50 bytes are already contiguous")
    }

    // MARK: reserve and commit

    @Test func reserveThenCommitAddsWhatWasWritten() throws {
        let buffer = EventBuffer()
        let space = try buffer.reserve(100)
        #expect(buffer.count == 0)
        #expect(space.reduce(0) { $0 + $1.count } >= 100)
        let data = EBFixture.pattern(100)
        data.withUnsafeBytes { space[0].copyMemory(from: $0) }
        try buffer.commit(100)
        #expect(buffer.count == 100)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), data) == nil)
    }

    /// Fills `pieces` in order with `bytes`.
    private func write(_ bytes: [UInt8], into pieces: [UnsafeMutableRawBufferPointer]) {
        var offset = 0
        for piece in pieces where offset < bytes.count {
            let n = min(piece.count, bytes.count - offset)
            bytes.withUnsafeBytes { piece.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
        }
    }

    @Test func aReservationCanSpanTwoPieces() throws {
        let buffer = EventBuffer()
        let first = EBFixture.pattern(4_000, seed: 30)
        try buffer.add(first)
        // Whatever is left after the first 4,000 bytes, ask for more.
        let space = try buffer.reserve(10_000)
        let total = space.reduce(0) { $0 + $1.count }
        #expect(total >= 10_000)
        #expect((1...2).contains(space.count))
        let data = EBFixture.pattern(10_000, seed: 31)
        write(data, into: space)
        try buffer.commit(10_000)
        #expect(buffer.count == 14_000)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), first + data) == nil)
        // libevent fills the tail of the last segment first; say what we saw.
        if space.count == 2 {
            let tail = try buffer.peek()[0]
            #expect(space[0].baseAddress == UnsafeMutableRawPointer(mutating: tail.baseAddress! + 4_000))
        }
    }

    @Test func committingPartOfATwoPieceReservation() throws {
        for committed in [10, 96, 2_000] {
            let buffer = EventBuffer()
            let first = EBFixture.pattern(4_000, seed: 32)
            try buffer.add(first)
            let space = try buffer.reserve(8_000)
            let data = EBFixture.pattern(8_000, seed: 33)
            write(data, into: space)
            try buffer.commit(committed)
            #expect(buffer.count == 4_000 + committed)
            #expect(try EBFixture.difference(EBFixture.contents(buffer), first + data[0..<committed]) == nil)
            try buffer.add("end")
            #expect(try EBFixture.difference(EBFixture.contents(buffer), first + data[0..<committed] + Array("end".utf8)) == nil)
        }
    }

    @Test func commitOfFewerBytesThanReserved() throws {
        let buffer = EventBuffer()
        let space = try buffer.reserve(500)
        let data = EBFixture.pattern(500)
        write(data, into: space)
        try buffer.commit(200)
        #expect(buffer.count == 200)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(data[0..<200])) == nil)
        try buffer.add("z")
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(data[0..<200]) + [UInt8(ascii: "z")]) == nil)
    }

    @Test func commitOfZeroAddsNothing() throws {
        let buffer = EventBuffer()
        try buffer.add("keep")
        _ = try buffer.reserve(10_000)
        try buffer.commit(0)
        #expect(buffer.count == 4)
        #expect(try buffer.string() == "keep")
        #expect(try buffer.peek().map(\.count) == [4])
        try buffer.drain(4)
        #expect(buffer.isEmpty)
        try buffer.add("next")
        #expect(try buffer.string() == "next")
    }

    @Test func commitWithoutAReservationIsRefused() throws {
        let buffer = EventBuffer()
        #expect(throws: BufferError.self) { try buffer.commit(1) }
        #expect(buffer.count == 0)
        _ = try buffer.reserve(10)
        try buffer.commit(5)
        // The reservation is used up.
        #expect(throws: BufferError.self) { try buffer.commit(1) }
        #expect(buffer.count == 5)
    }

    @Test func commitOfMoreThanReservedIsRefused() throws {
        let buffer = EventBuffer()
        try buffer.add("abc")
        let space = try buffer.reserve(64)
        let total = space.reduce(0) { $0 + $1.count }
        let error = #expect(throws: BufferError.self) { try buffer.commit(total + 1) }
        #expect(error == .commitWithoutReserve(requested: total + 1, reserved: total))
        #expect(buffer.count == 3)
        #expect(throws: BufferError.self) { try buffer.commit(-1) }
        #expect(buffer.count == 3)
    }

    @Test func anInterveningChangeCancelsTheReservation() throws {
        for change in ["add", "prepend", "drain", "remove", "move"] {
            let buffer = EventBuffer()
            try buffer.add("abc")
            _ = try buffer.reserve(16)
            switch change {
            case "add": try buffer.add("d")
            case "prepend": try buffer.prepend(Array("0".utf8))
            case "drain": try buffer.drain(1)
            case "remove": _ = try buffer.remove(upTo: 1)
            default: try buffer.move(upTo: 1, into: EventBuffer())
            }
            let before = try EBFixture.contents(buffer)
            #expect(throws: BufferError.self, "commit after \(change)") { try buffer.commit(4) }
            #expect(try EBFixture.difference(EBFixture.contents(buffer), before) == nil, "after \(change)")
        }
    }

    /// pullUp rearranges segments; a commit of an earlier reservation must
    /// then either be refused (libevent checks the reserved pointers still
    /// match the chain) or add exactly the committed bytes, never leave the
    /// buffer inconsistent.
    @Test func commitAfterAPullUpThatRearrangedSegmentsStaysConsistent() throws {
        let pieces = [EBFixture.pattern(3_000, seed: 40), EBFixture.pattern(3_000, seed: 41)]
        let (buffer, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        let space = try buffer.reserve(100)
        let data = EBFixture.pattern(100, seed: 42)
        write(data, into: space)
        _ = try buffer.pullUp()
        do {
            try buffer.commit(100)
            #expect(buffer.count == 6_100)
            #expect(try buffer.peek().reduce(0) { $0 + $1.count } == buffer.count)
            #expect(try EBFixture.difference(EBFixture.peekedBytes(buffer), pieces[0] + pieces[1] + data) == nil)
        } catch {
            #expect(buffer.count == 6_000)
            #expect(try EBFixture.difference(EBFixture.peekedBytes(buffer), pieces[0] + pieces[1]) == nil)
        }
    }

    /// The same for expand, which may replace the empty segment a
    /// reservation handed out.
    @Test func commitAfterAnExpandStaysConsistent() throws {
        let buffer = EventBuffer()
        let space = try buffer.reserve(100)
        let data = EBFixture.pattern(100, seed: 43)
        write(data, into: space)
        buffer.expand(100_000)
        do {
            try buffer.commit(100)
            #expect(buffer.count == 100)
            // The committed bytes are the ones written into the reservation.
            let committed = try buffer.peek().first?.baseAddress
            #expect(committed == UnsafeRawPointer(space[0].baseAddress), "the commit took bytes from another place")
            #expect(try EBFixture.difference(EBFixture.peekedBytes(buffer), data) == nil)
        } catch {
            #expect(buffer.count == 0)
        }
    }

    /// drain(0) on an empty buffer with an outstanding reservation, then the
    /// commit: libevent refuses such a commit (-1); it must not crash. In a
    /// process of its own, as a crash would end the test run.
    @Test func commitAfterDrainingAnEmptyBufferDoesNotCrash() async {
        await #expect(processExitsWith: .success) {
            let buffer = EventBuffer()
            let space = try! buffer.reserve(100)
            space[0].initializeMemory(as: UInt8.self, repeating: 0x41)
            try! buffer.drain(0)
            do {
                try buffer.commit(10)
                guard buffer.count == 10, (try? buffer.string()) == "AAAAAAAAAA" else { exit(3) }
            } catch {
                guard buffer.count == 0 else { exit(4) }
            }
            exit(0)
        }
    }

    // MARK: peek

    @Test func peekReturnsTheSegmentsInPlace() throws {
        let pieces = [Array("abcd".utf8), Array("efghij".utf8), Array("klm".utf8)]
        let (buffer, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        let all = try buffer.peek()
        #expect(all.map(\.count) == [4, 6, 3])
        #expect(all.map(\.baseAddress) == memories.map { Optional($0.base) })
        // A range in the middle: the pieces cover exactly the bytes asked for.
        let middle = try buffer.peek(length: 5, from: 2)
        #expect(middle.map(\.count) == [2, 3])
        #expect(middle[0].baseAddress == memories[0].base + 2)
        #expect(middle[1].baseAddress == memories[1].base)
        #expect(middle.flatMap { Array($0) } == Array("cdefg".utf8))
        let inside = try buffer.peek(length: 2, from: 5)
        #expect(inside.count == 1 && inside[0].baseAddress == memories[1].base + 1 && inside[0].count == 2)
        let last = try buffer.peek(length: 100, from: 9)
        #expect(last.map(\.count) == [1, 3])
        #expect(last.flatMap { Array($0) } == Array("jklm".utf8))
        #expect(try buffer.peek(length: 0, from: 3).isEmpty)
        #expect(try buffer.peek(from: 13).isEmpty)
        #expect(throws: BufferError.outOfRange(position: 14, length: 13)) { try buffer.peek(from: 14) }
        #expect(throws: BufferError.outOfRange(position: -1, length: 13)) { try buffer.peek(from: -1) }
        #expect(buffer.count == 13)
    }

    @Test func peekOfCopiedBytesMatchesCopyOut() throws {
        let buffer = EventBuffer()
        var random = EBFixture.Random(seed: 5)
        var all: [UInt8] = []
        for index in 0..<200 {
            let chunk = EBFixture.pattern(random.next(1...400), seed: UInt64(index))
            try buffer.add(chunk)
            all += chunk
        }
        for _ in 0..<100 {
            let from = random.next(0...all.count)
            let length = random.next(0...3_000)
            let pieces = try buffer.peek(length: length, from: from)
            let expected = Array(all[from..<min(all.count, from + length)])
            #expect(pieces.reduce(0) { $0 + $1.count } == expected.count)
            #expect(pieces.allSatisfy { $0.count > 0 })
            #expect(EBFixture.difference(pieces.flatMap { Array($0) }, expected) == nil)
        }
    }

    // MARK: segment reuse

    /// A buffer drained and refilled with a small amount writes into the
    /// segment it already had (DESIGN.md: buffers allocated once and reused).
    @Test func drainingAndRefillingReusesTheSegment() throws {
        let buffer = EventBuffer()
        try buffer.add(EBFixture.pattern(100))
        let first = try buffer.peek()[0].baseAddress
        for round in 0..<50 {
            try buffer.drain(buffer.count)
            try buffer.add(EBFixture.pattern(100 + round, seed: UInt64(round)))
            #expect(try buffer.peek()[0].baseAddress == first, "round \(round)")
            #expect(try EBFixture.difference(EBFixture.contents(buffer), EBFixture.pattern(100 + round, seed: UInt64(round))) == nil)
        }
        // The same through remove and readLine.
        for _ in 0..<10 {
            _ = try buffer.remove(upTo: buffer.count)
            try buffer.add("line\n")
            #expect(try buffer.peek()[0].baseAddress == first)
            #expect(try buffer.readLineString(.lf) == "line")
        }
    }
}
