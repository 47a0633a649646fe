import EventRPC
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("evtag: byte for byte as libevent 2.1")
struct EVTagTests {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined(separator: " ") }

    private func encoded(_ body: (inout EVTagEncoder) -> Void) -> String {
        var encoder = EVTagEncoder()
        body(&encoder)
        return hex(encoder.bytes)
    }

    /// The vectors measured with libevent 2.1.12 (issue 8).
    @Test func measuredVectors() {
        #expect(encoded { $0.int(0) } == "00")
        #expect(encoded { $0.int(0xf) } == "0f")
        #expect(encoded { $0.int(0x10) } == "10 10")
        #expect(encoded { $0.int(0x1234) } == "34 32 10")
        #expect(encoded { $0.int(0xffff_ffff) } == "7f ff ff ff f0")
        #expect(encoded { $0.int64(0x1_2345_6789) } == "89 87 65 43 21")
        #expect(encoded { $0.tag(0x80) } == "80 01")
        #expect(encoded { $0.tag(0x166) } == "e6 02")
        #expect(encoded { $0.marshalInt(3, 0x1234) } == "03 03 34 32 10")
        #expect(encoded { $0.marshalString(2, "hi") } == "02 02 68 69")
        #expect(encoded { $0.marshalTimeval(4, seconds: 1, microseconds: 2) } == "04 02 01 02")
    }

    @Test(arguments: [UInt32(0), 1, 0xf, 0x10, 0xff, 0x100, 0x1234, 0xdead_beef, 0xffff_ffff])
    func integersRoundTrip(_ value: UInt32) throws {
        var encoder = EVTagEncoder()
        encoder.int(value)
        encoder.int64(UInt64(value) << 31 | 7)
        encoder.tag(value)
        var decoder = EVTagDecoder(encoder.bytes)
        #expect(try decoder.int() == value)
        #expect(try decoder.int64() == UInt64(value) << 31 | 7)
        #expect(try decoder.tag() == value)
        #expect(decoder.isAtEnd)
    }

    /// The message the C program makes with libevent's evtag_marshal_*.
    private func swiftMessage() -> [UInt8] {
        var encoder = EVTagEncoder()
        encoder.marshalInt(3, 0x1234)
        encoder.marshalString(2, "hello, evtag")
        encoder.marshalTimeval(4, seconds: 1_700_000_000, microseconds: 123_456)
        encoder.marshalInt64(5, 0x1_2345_6789)
        encoder.marshalInt(0x166, 0xffff_ffff)
        encoder.record(7, [0x00, 0x01, 0x02, 0xff])
        return encoder.bytes
    }

    /// The C program, built once per test process.
    static let program: Result<String, any Error> = Result {
        let path = NSTemporaryDirectory() + "swiftevent-evtag-interop-\(getpid())"
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("evtag_interop.c").path
        let flags = try Shell.run("/usr/bin/pkg-config", ["--cflags", "--libs", "libevent"])
            .split(whereSeparator: \.isWhitespace).map(String.init)
        try Shell.run("/usr/bin/gcc", ["-O2", "-o", path, source] + flags)
        return path
    }

    private func interopProgram() throws -> String { try Self.program.get() }

    /// Both directions against libevent itself: our bytes equal libevent's,
    /// libevent decodes ours, we decode libevent's.
    @Test func interoperatesWithLibevent() throws {
        let program = try interopProgram()
        let theirs = try Shell.run(program, ["encode"]).trimmingCharacters(in: .whitespacesAndNewlines)
        let ours = swiftMessage().map { String(format: "%02x", $0) }.joined()
        #expect(ours == theirs)
        let decodedByLibevent = try Shell.run(program, ["decode", ours])
        #expect(decodedByLibevent == "int=1234 string=hello, evtag timeval=1700000000.123456 int64=123456789 big=ffffffff fixed=000102ff\n")
        var bytes: [UInt8] = []
        var index = theirs.startIndex
        while index < theirs.endIndex {
            let next = theirs.index(index, offsetBy: 2)
            bytes.append(UInt8(theirs[index..<next], radix: 16)!)
            index = next
        }
        var decoder = EVTagDecoder(bytes)
        #expect(try decoder.unmarshalInt(3) == 0x1234)
        #expect(try decoder.unmarshalString(2) == "hello, evtag")
        let when = try decoder.unmarshalTimeval(4)
        #expect(when.seconds == 1_700_000_000 && when.microseconds == 123_456)
        #expect(try decoder.unmarshalInt64(5) == 0x1_2345_6789)
        #expect(try decoder.unmarshalInt(0x166) == 0xffff_ffff)
        let (tag, payload) = try decoder.record()
        #expect(tag == 7 && payload.remaining == [0x00, 0x01, 0x02, 0xff])
        #expect(decoder.isAtEnd)
    }

    /// Hostile input: each a clear error, never a crash.
    @Test func hostileInputIsAClearError() {
        var truncatedTag = EVTagDecoder([0x80, 0x80])
        #expect(throws: EVTagError.truncated(at: 2)) { try truncatedTag.tag() }
        var longTag = EVTagDecoder([0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
        #expect(throws: EVTagError.tagTooLong(at: 0)) { try longTag.tag() }
        var tooManyNibbles = EVTagDecoder([0x9f, 0xff, 0xff, 0xff, 0xff])
        #expect(throws: EVTagError.integerTooLong(nibbles: 10, at: 0)) { try tooManyNibbles.int() }
        var tooManyNibbles64 = EVTagDecoder([0xff] + Array(repeating: 0xff, count: 8))
        #expect(throws: EVTagError.integerTooLong(nibbles: 16, at: 0)) { _ = try tooManyNibbles64.int() }
        var truncatedInt = EVTagDecoder([0x30, 0x12])
        #expect(throws: EVTagError.truncated(at: 0)) { try truncatedInt.int() }
        var pastEnd = EVTagDecoder([0x01, 0x7f, 0xff, 0xff, 0xff, 0xf0, 0x00])
        #expect(throws: EVTagError.lengthPastEnd(length: Int(UInt32.max), at: 0)) { _ = try pastEnd.record() }
        var wrongTag = EVTagDecoder([0x03, 0x01, 0x05])
        #expect(throws: EVTagError.unexpectedTag(expected: 4, found: 3, at: 0)) { _ = try wrongTag.unmarshalInt(4) }
        var empty = EVTagDecoder([])
        #expect(throws: EVTagError.truncated(at: 0)) { _ = try empty.record() }
    }
}
