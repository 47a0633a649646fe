// Reading lines (evbuffer_readln) with every end-of-line style.
import EventBuffers
import Glibc
import Testing

@Suite struct EventBufferLineTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let style: EventBuffer.EndOfLine
        let input: String
        let lines: [String]
        /// What stays in the buffer once no complete line is left.
        let rest: String
        var testDescription: String { "\(style)" }
    }

    static let cases: [Case] = [
        // LF only: a CR before it belongs to the line.
        Case(style: .lf, input: "a\nb\r\n\nc\rd\ne", lines: ["a", "b\r", "", "c\rd"], rest: "e"),
        // LF, or CR LF; a lone CR is part of the line.
        Case(style: .crlf, input: "a\r\nb\n\r\nc\rd\ne\r\r\nf\r", lines: ["a", "b", "", "c\rd", "e\r"], rest: "f\r"),
        // Exactly CR LF; a lone LF or CR is part of the line.
        Case(style: .crlfStrict, input: "a\r\nb\nc\r\n\r\nd\re\r\n\n\r", lines: ["a", "b\nc", "", "d\re"], rest: "\n\r"),
        // Any run of CR and LF ends a line, so no empty lines come out.
        Case(style: .any, input: "a\r\n\r\nb\rc\n\nd\n\re", lines: ["a", "b", "c", "d"], rest: "e"),
        // NUL.
        Case(style: .nul, input: "a\0b\n\0\0c", lines: ["a", "b\n", ""], rest: "c"),
    ]

    @Test(arguments: cases)
    func readsEveryLineOfAStyle(_ test: Case) throws {
        let buffer = EventBuffer()
        try buffer.add(test.input)
        var lines: [String] = []
        while let line = try buffer.readLineString(test.style) { lines.append(line) }
        #expect(lines == test.lines)
        #expect(try buffer.string() == test.rest)
    }

    /// The same input split into one-byte segments gives the same lines.
    @Test(arguments: cases)
    func readsTheSameLinesWhenEveryByteIsItsOwnSegment(_ test: Case) throws {
        let (buffer, memories) = try EBFixture.segmented(Array(test.input.utf8).map { [$0] })
        defer { withExtendedLifetime(memories) {} }
        #expect(try buffer.peek().count == test.input.utf8.count)
        var lines: [String] = []
        while let line = try buffer.readLineString(test.style) { lines.append(line) }
        #expect(lines == test.lines)
        #expect(try buffer.string() == test.rest)
    }

    /// Fed one byte at a time, a line comes out as soon as it is complete.
    @Test(arguments: cases)
    func readsTheSameLinesFedByteByByte(_ test: Case) throws {
        let buffer = EventBuffer()
        var lines: [String] = []
        for byte in test.input.utf8 {
            try buffer.add([byte])
            while let line = try buffer.readLineString(test.style) { lines.append(line) }
        }
        if test.style == .any {
            // A lone CR ends a line at once, so the LF after it is read as a
            // second end of line: an empty line (libevent's EOL_ANY too).
            #expect(lines.filter { !$0.isEmpty } == test.lines)
            #expect(lines.count > test.lines.count)
        } else {
            #expect(lines == test.lines)
        }
    }

    @Test func aLineSplitAcrossSegmentsComesOutWhole() throws {
        let (buffer, memories) = try EBFixture.segmented(["GET /a", "/b HT", "TP/1.1\r", "\nHost: x\r\n"])
        defer { withExtendedLifetime(memories) {} }
        #expect(try buffer.readLineString(.crlfStrict) == "GET /a/b HTTP/1.1")
        #expect(try buffer.readLineString(.crlfStrict) == "Host: x")
        #expect(buffer.isEmpty)
        // A long line over many copied segments.
        let long = EventBuffer()
        let text = String(repeating: "0123456789", count: 20_000)
        for chunk in stride(from: 0, to: text.utf8.count, by: 777) {
            let bytes = Array(text.utf8)
            try long.add(bytes[chunk..<min(chunk + 777, bytes.count)])
        }
        try long.add("\r\nnext")
        #expect(try long.readLineString(.crlf) == text)
        #expect(try long.string() == "next")
    }

    @Test func crAndLfInSeparateAddsWithCRLF() throws {
        for style in [EventBuffer.EndOfLine.crlf, .crlfStrict] {
            let buffer = EventBuffer()
            try buffer.add("line\r")
            #expect(try buffer.readLine(style) == nil, "\(style): the LF has not arrived")
            #expect(try buffer.string() == "line\r")
            try buffer.add("\n")
            #expect(try buffer.readLineString(style) == "line")
            #expect(buffer.isEmpty)
        }
    }

    /// libevent's EVBUFFER_EOL_ANY treats a lone CR as an end of line: the
    /// line comes out before the LF arrives, and the LF arriving later reads
    /// as an empty line.
    @Test func crAndLfInSeparateAddsWithAny() throws {
        let buffer = EventBuffer()
        try buffer.add("line\r")
        #expect(try buffer.readLineString(.any) == "line")
        #expect(buffer.isEmpty)
        try buffer.add("\nnext\n")
        #expect(try buffer.readLineString(.any) == "")
        #expect(try buffer.readLineString(.any) == "next")
        #expect(try buffer.readLineString(.any) == nil)
    }

    @Test func crAndLfInSeparateAddsWithLF() throws {
        let buffer = EventBuffer()
        try buffer.add("line\r")
        #expect(try buffer.readLine(.lf) == nil)
        try buffer.add("\n")
        #expect(try buffer.readLineString(.lf) == "line\r")
    }

    @Test func emptyLines() throws {
        let buffer = EventBuffer()
        try buffer.add("\n\r\n\n")
        #expect(try buffer.readLineString(.crlf) == "")
        #expect(try buffer.readLineString(.crlf) == "")
        #expect(try buffer.readLineString(.lf) == "")
        #expect(try buffer.readLineString(.lf) == nil)
        try buffer.add("\0\0")
        #expect(try buffer.readLine(.nul) == [])
        #expect(try buffer.readLine(.nul) == [])
        #expect(buffer.isEmpty)
    }

    @Test(arguments: EventBuffer.EndOfLine.allCases)
    func withoutALineNothingIsRemoved(_ style: EventBuffer.EndOfLine) throws {
        let buffer = EventBuffer()
        #expect(try buffer.readLine(style) == nil)
        // For NUL-terminated lines, CR and LF are ordinary bytes.
        let text = style == .nul ? "no nul\r\n" : "no end here"
        let (segmented, memories) = try EBFixture.segmented(["no ", "end", " here"])
        defer { withExtendedLifetime(memories) {} }
        try buffer.add(text)
        #expect(try buffer.readLine(style) == nil)
        #expect(try buffer.string() == text)
        #expect(try segmented.readLine(style) == nil)
        #expect(segmented.count == 11)
    }

    @Test func readLineDecodesInvalidUTF8() throws {
        let buffer = EventBuffer()
        try buffer.add([0x61, 0xFF, 0x62, 0x0A])
        #expect(try buffer.readLineString(.lf) == "a\u{FFFD}b")
    }
}
