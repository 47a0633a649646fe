// Adding, prepending, removing, copying out and draining bytes, as a user of
// libevent's evbuffer_add/prepend/remove/copyout_from/drain would observe it.
import EventBuffers
import Glibc
import Testing

@Suite struct EventBufferBasicsTests {
    // MARK: adding

    @Test func addsRawBytesArraysSlicesNonContiguousCollectionsAndStrings() throws {
        let buffer = EventBuffer()
        #expect(buffer.count == 0 && buffer.isEmpty && buffer.contiguousCount == 0)
        try [UInt8](arrayLiteral: 1, 2, 3).withUnsafeBytes { try buffer.add($0) }
        try buffer.add([4, 5] as [UInt8])
        try buffer.add(([0, 6, 7, 0] as [UInt8])[1..<3])
        try buffer.add(repeatElement(UInt8(8), count: 3))  // no contiguous storage
        try buffer.add((9...10).map { UInt8($0) }.lazy.map { $0 })
        try buffer.add("hé")  // UTF-8: 68 C3 A9
        #expect(buffer.count == 15)
        #expect(!buffer.isEmpty)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 9, 10, 0x68, 0xC3, 0xA9]) == nil)
        #expect(try buffer.copyOut(count: 12) == [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 9, 10])
        #expect(try buffer.copyOut(count: 4, from: 12) == [0x68, 0xC3, 0xA9])
        #expect(try buffer.string().hasSuffix("hé"))
    }

    @Test func prependPutsBytesInFront() throws {
        let buffer = EventBuffer()
        try buffer.prepend(Array("world".utf8))
        #expect(try buffer.string() == "world")
        try buffer.prepend(Array(" ".utf8))
        try "hello".utf8.withContiguousStorageIfAvailable { try buffer.prepend(UnsafeRawBufferPointer($0)) }
        #expect(try buffer.string() == "hello world")
        try buffer.add("!")
        try buffer.prepend(repeatElement(UInt8(ascii: ">"), count: 2))
        #expect(try buffer.string() == ">>hello world!")
        #expect(buffer.count == 14)
        // Many prepends keep every byte in order.
        let many = EventBuffer()
        for value in (0..<300).reversed() { try many.prepend([UInt8(value % 256), UInt8(value / 256)]) }
        let expected = (0..<300).flatMap { [UInt8($0 % 256), UInt8($0 / 256)] }
        #expect(try EBFixture.difference(EBFixture.contents(many), expected) == nil)
    }

    // MARK: removing

    @Test func removeIntoAPointerTakesAtMostItsSize() throws {
        let buffer = EventBuffer()
        try buffer.add("abcdefgh")
        var first = [UInt8](repeating: 0, count: 3)
        let n = try first.withUnsafeMutableBytes { try buffer.remove(into: $0) }
        #expect(n == 3 && first == Array("abc".utf8))
        #expect(buffer.count == 5)
        var rest = [UInt8](repeating: 0, count: 100)
        let m = try rest.withUnsafeMutableBytes { try buffer.remove(into: $0) }
        #expect(m == 5)
        #expect(Array(rest[0..<5]) == Array("defgh".utf8))
        #expect(rest[5...].allSatisfy { $0 == 0 })
        #expect(buffer.isEmpty)
    }

    @Test func removeUpToReturnsWhatIsThere() throws {
        let buffer = EventBuffer()
        try buffer.add("0123456789")
        #expect(try buffer.remove(upTo: 4) == Array("0123".utf8))
        #expect(try buffer.remove(upTo: 0) == [])
        #expect(buffer.count == 6)
        #expect(try buffer.remove(upTo: 1_000) == Array("456789".utf8))
        #expect(buffer.isEmpty)
    }

    @Test func removingFromAnEmptyBufferGivesNothing() throws {
        let buffer = EventBuffer()
        #expect(try buffer.remove(upTo: 10) == [])
        var space = [UInt8](repeating: 0xEE, count: 8)
        #expect(try space.withUnsafeMutableBytes { try buffer.remove(into: $0) } == 0)
        #expect(space == [UInt8](repeating: 0xEE, count: 8))
        #expect(try buffer.copyOut(count: 10) == [])
        try buffer.drain(5)
        #expect(buffer.count == 0)
    }

    // MARK: copying out

    @Test func copyOutFromAPositionLeavesTheBufferAlone() throws {
        let (buffer, memories) = try EBFixture.segmented(["abc", "defg", "hij"])
        defer { withExtendedLifetime(memories) {} }
        #expect(try buffer.copyOut(count: 4, from: 2) == Array("cdef".utf8))
        #expect(try buffer.copyOut(count: 100, from: 7) == Array("hij".utf8))
        #expect(try buffer.copyOut(count: 5, from: 10) == [])
        #expect(try buffer.copyOut(count: 10) == Array("abcdefghij".utf8))
        var target = [UInt8](repeating: 0, count: 5)
        #expect(try target.withUnsafeMutableBytes { try buffer.copyOut(into: $0, from: 3) } == 5)
        #expect(target == Array("defgh".utf8))
        var large = [UInt8](repeating: 0, count: 50)
        #expect(try large.withUnsafeMutableBytes { try buffer.copyOut(into: $0, from: 8) } == 2)
        #expect(Array(large[0..<2]) == Array("ij".utf8))
        #expect(buffer.count == 10)
        #expect(try buffer.string() == "abcdefghij")
    }

    @Test func copyOutPastTheEndIsOutOfRange() throws {
        let buffer = EventBuffer()
        try buffer.add("abc")
        #expect(throws: BufferError.outOfRange(position: 4, length: 3)) { try buffer.copyOut(count: 1, from: 4) }
        #expect(throws: BufferError.outOfRange(position: -1, length: 3)) { try buffer.copyOut(count: 1, from: -1) }
        var target = [UInt8](repeating: 0, count: 2)
        #expect(throws: BufferError.outOfRange(position: 9, length: 3)) {
            try target.withUnsafeMutableBytes { try buffer.copyOut(into: $0, from: 9) }
        }
        #expect(try buffer.string() == "abc")
    }

    // MARK: draining

    @Test func drainRemovesFromTheFrontAndMoreThanTheLengthEmpties() throws {
        let buffer = EventBuffer()
        try buffer.add(EBFixture.pattern(10_000))
        try buffer.drain(0)
        #expect(buffer.count == 10_000)
        try buffer.drain(1)
        #expect(try buffer.copyOut(count: 3) == Array(EBFixture.pattern(10_000)[1..<4]))
        try buffer.drain(4_999)
        #expect(buffer.count == 5_000)
        #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(EBFixture.pattern(10_000)[5_000...])) == nil)
        try buffer.drain(1_000_000)
        #expect(buffer.count == 0 && buffer.isEmpty && buffer.contiguousCount == 0)
        try buffer.drain(-3)
        try buffer.add("again")
        #expect(try buffer.string() == "again")
    }

    // MARK: counts

    @Test func contiguousCountIsTheFirstSegmentsLength() throws {
        let (buffer, memories) = try EBFixture.segmented(["abcd", "efghij", "k"])
        defer { withExtendedLifetime(memories) {} }
        #expect(buffer.count == 11)
        #expect(buffer.contiguousCount == 4)
        try buffer.drain(1)
        #expect(buffer.contiguousCount == 3)
        try buffer.drain(3)
        #expect(buffer.contiguousCount == 6)
        let flat = EventBuffer()
        try flat.add(EBFixture.pattern(1_000))
        #expect(flat.contiguousCount == 1_000)
    }

    // MARK: integrity over many operations

    /// Thousands of small adds and removes of random sizes, crossing segment
    /// boundaries all the time, checked byte for byte against a plain array.
    @Test(arguments: [1, 2, 3])
    func manySmallAddsAndRemovesKeepEveryByte(seed: UInt64) throws {
        let source = EBFixture.pattern(600_000, seed: seed)
        var random = EBFixture.Random(seed: seed &* 7919)
        let buffer = EventBuffer()
        var model: [UInt8] = []
        var modelHead = 0
        var written = 0
        var step = 0
        while written < source.count || modelHead < model.count {
            step += 1
            if written < source.count && random.next(0...2) != 0 {
                let n = min(random.next(1...900), source.count - written)
                let chunk = source[written..<written + n]
                switch random.next(0...2) {
                case 0: try buffer.add(chunk)
                case 1: try chunk.withUnsafeBytes { try buffer.add($0) }
                default: try buffer.add(Array(chunk))
                }
                model += chunk
                written += n
            } else {
                let n = random.next(0...1_300)
                let expected = Array(model[modelHead..<min(modelHead + n, model.count)])
                switch random.next(0...2) {
                case 0:
                    #expect(try EBFixture.difference(buffer.remove(upTo: n), expected) == nil)
                case 1:
                    var target = [UInt8](repeating: 0, count: n)
                    let got = try target.withUnsafeMutableBytes { try buffer.remove(into: $0) }
                    #expect(got == expected.count)
                    #expect(EBFixture.difference(target[0..<got], expected) == nil)
                default:
                    #expect(try EBFixture.difference(buffer.copyOut(count: expected.count), expected) == nil)
                    try buffer.drain(n)
                }
                modelHead += expected.count
            }
            #expect(buffer.count == model.count - modelHead)
            if step % 97 == 0 {
                #expect(try EBFixture.difference(EBFixture.contents(buffer), Array(model[modelHead...])) == nil)
                #expect(try EBFixture.difference(EBFixture.peekedBytes(buffer), Array(model[modelHead...])) == nil)
            }
        }
        #expect(buffer.isEmpty)
        #expect(model.count == source.count)
    }

    // MARK: empty operations

    @Test func zeroLengthOperationsChangeNothing() throws {
        let buffer = EventBuffer()
        try buffer.add([UInt8]())
        try buffer.add("")
        try buffer.add(UnsafeRawBufferPointer(start: nil, count: 0))
        try buffer.prepend([UInt8]())
        try buffer.drain(0)
        #expect(buffer.count == 0 && buffer.isEmpty)
        #expect(try buffer.peek().isEmpty)
        try buffer.add("x")
        try buffer.add([UInt8]())
        try buffer.prepend(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(try buffer.string() == "x")
        #expect(try buffer.remove(upTo: 0) == [])
        #expect(buffer.count == 1)
    }

    /// `drain` and `move(upTo:into:)` treat a negative count as zero.
    @Test func negativeCountsForDrainAndMoveDoNothing() throws {
        let buffer = EventBuffer()
        try buffer.add("abc")
        try buffer.drain(-1)
        let other = EventBuffer()
        #expect(try buffer.move(upTo: -1, into: other) == 0)
        #expect(buffer.count == 3 && other.count == 0)
    }

    /// remove(upTo:) must not do worse with a negative count than drain
    /// does: nothing removed, an empty result. In a process of its own, as a
    /// crash would otherwise end the test run.
    @Test func removeUpToANegativeCountRemovesNothing() async {
        await #expect(processExitsWith: .success) {
            let buffer = EventBuffer()
            try! buffer.add("abc")
            let removed = try? buffer.remove(upTo: -1)
            exit(buffer.count == 3 && (removed ?? []).isEmpty ? 0 : 3)
        }
    }

    /// The same for copyOut(count:from:).
    @Test func copyOutOfANegativeCountCopiesNothing() async {
        await #expect(processExitsWith: .success) {
            let buffer = EventBuffer()
            try! buffer.add("abc")
            let copied = try? buffer.copyOut(count: -1)
            exit(buffer.count == 3 && (copied ?? []).isEmpty ? 0 : 3)
        }
    }
}
