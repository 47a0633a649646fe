import EventDNS
import Testing

@Suite("DNS messages: round trips and bad input")
struct DNSMessageTests {
    private func header(id: UInt16 = 1, flags: UInt16 = 0x8180, counts: [UInt16]) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), UInt8(flags >> 8), UInt8(flags & 0xFF)]
        for count in counts { bytes += [UInt8(count >> 8), UInt8(count & 0xFF)] }
        return bytes
    }

    private func name(_ text: String) -> [UInt8] {
        text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
    }

    @Test func roundTripWithCompression() throws {
        var message = DNSMessage()
        message.id = 0xBEEF
        message.isResponse = true
        message.questions = [DNSQuestion(name: "www.example.test", type: .a)]
        message.answers = [
            DNSRecord(name: "www.example.test", type: .cname, ttl: 60, data: .cname("web.example.test")),
            .a("web.example.test", [192, 0, 2, 1]),
            DNSRecord(name: "example.test", type: .mx, ttl: 60, data: .mx(preference: 5, exchange: "mail.example.test")),
            DNSRecord(name: "example.test", type: .txt, ttl: 60, data: .txt([Array("a".utf8), []])),
            DNSRecord(name: "_s._tcp.example.test", type: .srv, ttl: 60, data: .srv(priority: 1, weight: 2, port: 3, target: "t.example.test")),
            .aaaa("web.example.test", Array(repeating: 0, count: 15) + [1]),
        ]
        message.ednsUDPSize = 1232
        let bytes = try message.serialized()
        // Compression: "example.test" appears in full once for all the
        // compressed names, and once more in the SRV target, which RFC 2782
        // says is not compressed.
        let full = name("example.test")
        let occurrences = (0...(bytes.count - full.count)).filter { Array(bytes[$0..<($0 + full.count)]) == full }.count
        #expect(occurrences == 2)
        #expect(try DNSMessage.parse(bytes) == message)
    }

    @Test func truncationSetsTC() throws {
        var message = DNSMessage()
        message.isResponse = true
        message.questions = [DNSQuestion(name: "big.test", type: .a)]
        message.answers = (1...100).map { .a("big.test", [10, 0, 0, UInt8($0)]) }
        let bytes = try message.serialized(limit: 512)
        #expect(bytes.count <= 512)
        let parsed = try DNSMessage.parse(bytes)
        #expect(parsed.isTruncated)
        #expect(parsed.answers.count < 100)
    }

    @Test func compressionPointerLoopIsRefused() {
        // The question name is a pointer to itself.
        let bytes = header(counts: [1, 0, 0, 0]) + [0xC0, 12, 0, 1, 0, 1]
        #expect(throws: DNSError.badPointer(at: 12)) { try DNSMessage.parse(bytes) }
    }

    @Test func forwardPointerIsRefused() {
        let bytes = header(counts: [1, 0, 0, 0]) + [0xC0, 18, 0, 1, 0, 1] + name("a.test")
        #expect(throws: DNSError.badPointer(at: 12)) { try DNSMessage.parse(bytes) }
    }

    @Test func pointerChainsThatGoBackAndForthAreRefused() {
        // Answer name points back at the question name's second label, whose
        // own bytes then point forward again.
        var bytes = header(counts: [1, 1, 0, 0]) + [1, 0x61, 0xC0, 30, 0, 1, 0, 1]
        bytes += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]
        #expect(throws: DNSError.self) { try DNSMessage.parse(bytes) }
    }

    @Test(arguments: [UInt8(0x40), 0x80, 0xBF])
    func reservedLabelTypesAreRefused(_ byte: UInt8) {
        let bytes = header(counts: [1, 0, 0, 0]) + [byte, 1, 0, 1, 0, 1]
        #expect(throws: DNSError.badLabelType(byte, at: 12)) { try DNSMessage.parse(bytes) }
    }

    @Test func labelsOver63AreRefused() {
        let bytes = header(counts: [1, 0, 0, 0]) + [64] + Array(repeating: 0x61, count: 64) + [0, 0, 1, 0, 1]
        #expect(throws: DNSError.badLabelType(64, at: 12)) { try DNSMessage.parse(bytes) }
        #expect(throws: DNSError.self) { try DNSName(String(repeating: "a", count: 64) + ".test") }
    }

    @Test func namesOver255AreRefused() {
        var labels: [UInt8] = []
        for _ in 0..<5 { labels += [63] + Array(repeating: 0x61, count: 63) }
        let bytes = header(counts: [1, 0, 0, 0]) + labels + [0, 0, 1, 0, 1]
        // 1 + 4 × 64 > 255 at the fourth label.
        #expect(throws: DNSError.nameTooLong(at: 12 + 3 * 64)) { try DNSMessage.parse(bytes) }
    }

    @Test func countsLargerThanThePacketAreRefused() {
        let bytes = header(counts: [1, 65_535, 0, 0]) + name("a.test") + [0, 1, 0, 1]
        #expect(throws: DNSError.countsExceedMessage) { try DNSMessage.parse(bytes) }
    }

    @Test func recordsRunningPastTheEndAreRefused() {
        let bytes = header(counts: [0, 1, 0, 0]) + name("a.test") + [0, 1, 0, 1, 0, 0, 0, 60, 0, 200, 1, 2, 3, 4]
        #expect(throws: DNSError.truncatedMessage(at: 30)) { try DNSMessage.parse(bytes) }
    }

    @Test func zeroLengthAndHeaderOnlyPackets() {
        #expect(throws: DNSError.truncatedMessage(at: 0)) { try DNSMessage.parse([]) }
        #expect(throws: DNSError.truncatedMessage(at: 4)) { try DNSMessage.parse([1, 2, 3, 4]) }
    }

    @Test func hugeTXTRecordsParseAndWrongLengthsAreRefused() throws {
        // 65 535 bytes of TXT data in 257 strings: parses.
        var data: [UInt8] = []
        while data.count + 256 <= 65_000 { data += [255] + Array(repeating: 0x7A, count: 255) }
        var bytes = header(counts: [0, 1, 0, 0]) + name("t.test") + [0, 16, 0, 1, 0, 0, 0, 1]
        bytes += [UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
        let message = try DNSMessage.parse(bytes)
        if case .txt(let strings) = message.answers.first?.data {
            #expect(strings.count == data.count / 256)
        } else {
            Issue.record("no TXT record")
        }
        // A TXT string whose length runs past its record.
        let bad = header(counts: [0, 1, 0, 0]) + name("t.test") + [0, 16, 0, 1, 0, 0, 0, 1, 0, 2, 5, 0x61]
        #expect(throws: DNSError.badRecordData(.txt, "string runs past the record")) { try DNSMessage.parse(bad) }
        // An A record that is not 4 bytes.
        let badA = header(counts: [0, 1, 0, 0]) + name("t.test") + [0, 1, 0, 1, 0, 0, 0, 1, 0, 3, 1, 2, 3]
        #expect(throws: DNSError.badRecordData(.a, "3 bytes, not 4")) { try DNSMessage.parse(badA) }
    }

    @Test func caseRandomisationKeepsTheNameAndEqualityIgnoresCase() throws {
        let name: DNSName = "www.Example.test"
        func randomize(seed: UInt64) -> DNSName {
            var state = seed
            return name.randomizingCase {
                state = state &* 6_364_136_223_846_793_005 &+ 1
                return state
            }
        }
        let randomized = randomize(seed: 0x1234_5678)
        #expect(randomized == name)
        #expect(randomized.description.lowercased() == "www.example.test")
        // The case bits come from the generator: this seed changes some letters
        // (byte for byte different), and the same seed gives the same name.
        #expect(!randomized.isIdentical(to: name))
        #expect(randomize(seed: 0x1234_5678).isIdentical(to: randomized))
        // A set bit makes a letter upper case, a clear one lower; digits and dashes stay.
        let digits: DNSName = "a-1.B2"
        #expect(digits.randomizingCase { 0 }.description == "a-1.b2")
        #expect(digits.randomizingCase { UInt64.max }.description == "A-1.B2")
        #expect(DNSName.root.description == ".")
    }
}
