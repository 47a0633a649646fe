// Searching (evbuffer_search_range, evbuffer_search_eol) and positions
// (evbuffer_ptr_set).
import EventBuffers
import Glibc
import Testing

@Suite struct EventBufferSearchTests {
    private typealias Position = EventBuffer.Position

    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func findsPatternsThatCrossSegmentBoundaries() throws {
        let (buffer, memories) = try EBFixture.segmented(["abcX", "Y", "Zdef", "ghXYZ"])
        defer { withExtendedLifetime(memories) {} }
        #expect(buffer.search(bytes("XYZ")) == Position(3))
        #expect(buffer.search(bytes("cXYZd")) == Position(2))
        #expect(buffer.search(bytes("fgh")) == Position(8))
        #expect(buffer.search(bytes("XYZ"), from: Position(4)) == Position(11))
        #expect(buffer.search(bytes("abcXYZdefghXYZ")) == Position(0))
    }

    @Test func findsPatternsAtTheVeryStartAndEnd() throws {
        let buffer = EventBuffer()
        try buffer.add("start middle end")
        #expect(buffer.search(bytes("start")) == Position(0))
        #expect(buffer.search(bytes("s")) == Position(0))
        #expect(buffer.search(bytes("end")) == Position(13))
        #expect(buffer.search(bytes("d")) == Position(8))
        #expect(buffer.search(bytes("d"), from: Position(9)) == Position(9))
        #expect(buffer.search(bytes("d"), from: Position(10)) == Position(15))
        #expect(buffer.search(bytes("d"), from: Position(15)) == Position(15))
        #expect(buffer.search(bytes("start middle end")) == Position(0))
    }

    @Test func reportsNothingWhenThePatternIsAbsent() throws {
        let buffer = EventBuffer()
        #expect(buffer.search(bytes("x")) == nil)
        try buffer.add("aaaaab")
        #expect(buffer.search(bytes("aab")) == Position(3))
        #expect(buffer.search(bytes("aac")) == nil)
        #expect(buffer.search(bytes("baa")) == nil)
        #expect(buffer.search(bytes("aaaaabb")) == nil, "longer than the buffer")
        #expect(buffer.search(bytes("b"), from: Position(6)) == nil)
        #expect(buffer.search(bytes("a"), from: Position(100)) == nil)
        #expect(try buffer.string() == "aaaaab", "searching removes nothing")
    }

    @Test func anEmptyPatternMatchesWhereTheSearchStarts() throws {
        let buffer = EventBuffer()
        try buffer.add("abc")
        #expect(buffer.search([UInt8]()) == Position(0))
        #expect(buffer.search([UInt8](), from: Position(2)) == Position(2))
    }

    @Test func theRangeLimitsAreHonoured() throws {
        let (buffer, memories) = try EBFixture.segmented(["one two ", "one two ", "three"])
        defer { withExtendedLifetime(memories) {} }
        // The match must start at or after `from`...
        #expect(buffer.search(bytes("one"), from: Position(1)) == Position(8))
        #expect(buffer.search(bytes("two"), from: Position(4)) == Position(4))
        #expect(buffer.search(bytes("two"), from: Position(5)) == Position(12))
        // ...and end at or before `to`.
        #expect(buffer.search(bytes("two"), to: Position(7)) == Position(4))
        #expect(buffer.search(bytes("two"), to: Position(6)) == nil)
        #expect(buffer.search(bytes("two"), from: Position(5), to: Position(15)) == Position(12))
        #expect(buffer.search(bytes("two"), from: Position(5), to: Position(14)) == nil)
        #expect(buffer.search(bytes("three"), to: Position(21)) == Position(16))
        #expect(buffer.search(bytes("three"), to: Position(20)) == nil)
        #expect(buffer.search(bytes("three"), to: Position(1_000)) == Position(16))
        #expect(buffer.search(bytes("one"), from: Position(3), to: Position(3)) == nil)
    }

    /// Random needles in a buffer of many small segments, checked against
    /// a plain search of the same bytes.
    @Test func agreesWithAPlainSearchOnRandomInput() throws {
        var random = EBFixture.Random(seed: 77)
        // A small alphabet makes partial matches common.
        let text = (0..<6_000).map { _ in UInt8(ascii: "a") + UInt8(random.next(0...3)) }
        var pieces: [[UInt8]] = []
        var offset = 0
        while offset < text.count {
            let n = min(random.next(1...40), text.count - offset)
            pieces.append(Array(text[offset..<offset + n]))
            offset += n
        }
        let (buffer, memories) = try EBFixture.segmented(pieces)
        defer { withExtendedLifetime(memories) {} }
        func plain(_ needle: [UInt8], from: Int, to: Int) -> Int? {
            guard needle.count <= to - from else { return nil }
            for start in from...(to - needle.count) where Array(text[start..<start + needle.count]) == needle {
                return start
            }
            return nil
        }
        for _ in 0..<300 {
            let length = random.next(1...7)
            let at = random.next(0...(text.count - length))
            let needle = random.next(0...3) == 0
                ? (0..<length).map { _ in UInt8(ascii: "a") + UInt8(random.next(0...3)) }
                : Array(text[at..<at + length])
            let from = random.next(0...text.count)
            let to = random.next(from...text.count)
            #expect(
                buffer.search(needle, from: Position(from), to: Position(to))?.offset == plain(needle, from: from, to: to),
                "needle \(needle) in \(from)..<\(to)")
        }
    }

    // MARK: ends of line

    @Test func searchEndOfLineReportsWhereAndHowLong() throws {
        let (buffer, memories) = try EBFixture.segmented(["ab\r", "\ncd\n", "ef\0gh\r\r\n"])
        defer { withExtendedLifetime(memories) {} }
        #expect(buffer.searchEndOfLine(.crlf).map { [$0.0.offset, $0.length] } == [2, 2])
        #expect(buffer.searchEndOfLine(.crlfStrict).map { [$0.0.offset, $0.length] } == [2, 2])
        #expect(buffer.searchEndOfLine(.lf).map { [$0.0.offset, $0.length] } == [3, 1])
        #expect(buffer.searchEndOfLine(.any).map { [$0.0.offset, $0.length] } == [2, 2])
        #expect(buffer.searchEndOfLine(.nul).map { [$0.0.offset, $0.length] } == [9, 1])
        #expect(buffer.searchEndOfLine(.lf, from: Position(4)).map { [$0.0.offset, $0.length] } == [6, 1])
        #expect(buffer.searchEndOfLine(.crlf, from: Position(7)).map { [$0.0.offset, $0.length] } == [13, 2])
        #expect(buffer.searchEndOfLine(.crlfStrict, from: Position(7)).map { [$0.0.offset, $0.length] } == [13, 2])
        #expect(buffer.searchEndOfLine(.any, from: Position(7)).map { [$0.0.offset, $0.length] } == [12, 3])
        #expect(buffer.searchEndOfLine(.nul, from: Position(10)) == nil)
        #expect(buffer.searchEndOfLine(.lf, from: Position(15)) == nil)
        #expect(buffer.count == 15)
    }

    @Test func searchEndOfLineInAnEmptyBufferFindsNothing() {
        let buffer = EventBuffer()
        for style in EventBuffer.EndOfLine.allCases { #expect(buffer.searchEndOfLine(style) == nil) }
    }

    // MARK: positions

    @Test func positionsOutsideTheBufferAreOutOfRange() throws {
        let buffer = EventBuffer()
        try buffer.add("0123456789")
        #expect(try buffer.position(at: 0) == Position(0))
        #expect(try buffer.position(at: 10) == Position(10))
        #expect(throws: BufferError.outOfRange(position: 11, length: 10)) { try buffer.position(at: 11) }
        #expect(throws: BufferError.outOfRange(position: -1, length: 10)) { try buffer.position(at: -1) }
        let three = try buffer.position(at: 3)
        #expect(try buffer.advance(three, by: 4) == Position(7))
        #expect(try buffer.advance(three, by: -3) == Position(0))
        #expect(try buffer.advance(three, by: 7) == Position(10))
        #expect(throws: BufferError.outOfRange(position: 11, length: 10)) { try buffer.advance(three, by: 8) }
        #expect(throws: BufferError.outOfRange(position: -1, length: 10)) { try buffer.advance(three, by: -4) }
        #expect(Position(2) < Position(3))
        // A position found by search feeds copyOut.
        let found = try #require(buffer.search(bytes("56")))
        #expect(try buffer.copyOut(count: 2, from: found.offset) == bytes("56"))
        try buffer.drain(8)
        #expect(throws: BufferError.outOfRange(position: 3, length: 2)) { try buffer.position(at: 3) }
    }
}
