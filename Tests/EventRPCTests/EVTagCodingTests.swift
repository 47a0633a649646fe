import EventRPC
import Testing

@Suite("evtag messages declared as Codable structs")
struct EVTagCodingTests {
    struct Inner: Codable, Equatable {
        var id: UInt32
        var label: String?
        enum CodingKeys: Int, CodingKey {
            case id = 1
            case label = 2
        }
    }

    struct Everything: Codable, Equatable {
        var small: UInt32
        var signed: Int32
        var big: UInt64
        var wide: Int
        var flag: Bool
        var name: String
        var blob: [UInt8]
        var inner: Inner
        var inners: [Inner]
        var numbers: [UInt32]
        var maybe: String?
        enum CodingKeys: Int, CodingKey {
            case small = 1, signed = 2, big = 3, wide = 4, flag = 5, name = 6, blob = 7, inner = 8, inners = 9,
                numbers = 10, maybe = 0x166
        }
    }

    static let sample = Everything(
        small: 0x1234, signed: -5, big: 0x1_2345_6789, wide: -1, flag: true, name: "héllo", blob: [0, 1, 0xff],
        inner: Inner(id: 7, label: nil), inners: [Inner(id: 1, label: "a"), Inner(id: 2, label: nil)],
        numbers: [3, 1, 4, 1, 5], maybe: "here")

    @Test func everyFieldTypeRoundTrips() throws {
        let bytes = try EVTagCoder.encode(Self.sample)
        #expect(try EVTagCoder.decode(Everything.self, from: bytes) == Self.sample)
        var absent = Self.sample
        absent.maybe = nil
        absent.numbers = []
        #expect(try EVTagCoder.decode(Everything.self, from: try EVTagCoder.encode(absent)) == absent)
    }

    /// The encoding is the records libevent's rpcgen writes, in field order.
    @Test func encodingIsRecordsByTag() throws {
        let bytes = try EVTagCoder.encode(Inner(id: 0x1234, label: "hi"))
        #expect(bytes == [0x01, 0x03, 0x34, 0x32, 0x10, 0x02, 0x02, 0x68, 0x69])
        #expect(try EVTagCoder.encode(Inner(id: 0, label: nil)) == [0x01, 0x01, 0x00])
    }

    struct Digest: EVTagFixedBytes, Equatable {
        static let length = 4
        var bytes: [UInt8]
    }

    struct Signed: Codable, Equatable {
        var digest: Digest
        var digests: [Digest]
        enum CodingKeys: Int, CodingKey {
            case digest = 1
            case digests = 2
        }
    }

    /// Fixed-length bytes: raw on the wire, any other length refused both ways.
    @Test func fixedLengthBytes() throws {
        let value = Signed(digest: Digest(bytes: [1, 2, 3, 4]), digests: [Digest(bytes: [9, 9, 9, 9])])
        let bytes = try EVTagCoder.encode(value)
        #expect(bytes == [0x01, 0x04, 1, 2, 3, 4, 0x02, 0x04, 9, 9, 9, 9])
        #expect(try EVTagCoder.decode(Signed.self, from: bytes) == value)
        #expect(throws: EncodingError.self) { try EVTagCoder.encode(Signed(digest: Digest(bytes: [1]), digests: [])) }
        #expect(throws: DecodingError.self) { try EVTagCoder.decode(Signed.self, from: [0x01, 0x02, 1, 2]) }
    }

    @Test func unknownTagsAreSkipped() throws {
        var encoder = EVTagEncoder()
        encoder.marshalString(99, "from a newer peer")
        encoder.marshalInt(1, 42)
        encoder.record(1000, [1, 2, 3])
        #expect(try EVTagCoder.decode(Inner.self, from: encoder.bytes) == Inner(id: 42, label: nil))
    }

    @Test func missingRequiredFieldNamesIt() throws {
        var encoder = EVTagEncoder()
        encoder.marshalString(2, "no id")
        do {
            _ = try EVTagCoder.decode(Inner.self, from: encoder.bytes)
            Issue.record("decoded without its required field")
        } catch let DecodingError.keyNotFound(key, context) {
            #expect(key.stringValue == "id")
            #expect(context.debugDescription.contains("tag 1"))
        }
    }

    @Test func wrongTypesAndHostileBytesAreErrors() throws {
        // A string where an integer is expected: too many nibbles or left-over bytes.
        var encoder = EVTagEncoder()
        encoder.marshalString(1, "not a number")
        do {
            _ = try EVTagCoder.decode(Inner.self, from: encoder.bytes)
            Issue.record("a string decoded as an integer")
        } catch let DecodingError.dataCorrupted(context) {
            // The error names the field.
            #expect(context.codingPath.map(\.stringValue) == ["id"])
            #expect(context.debugDescription.contains("field id (tag 1)"))
        }
        // A length past the end.
        #expect(throws: EVTagError.self) { try EVTagCoder.decode(Inner.self, from: [0x01, 0x7f, 0xff, 0xff, 0xff, 0xf0]) }
        // Nesting deeper than the limit.
        struct Nest: Codable {
            var next: [Nest]
            enum CodingKeys: Int, CodingKey { case next = 1 }
        }
        var deep: [UInt8] = []
        for _ in 0..<40 {
            var wrapper = EVTagEncoder()
            wrapper.record(1, deep)
            deep = wrapper.bytes
        }
        #expect(throws: EVTagError.tooDeep) { try EVTagCoder.decode(Nest.self, from: deep) }
        // A huge array of tiny records decodes (bounded by the input) without trouble.
        var many = EVTagEncoder()
        for index in 0..<20_000 { many.marshalInt(10, UInt32(index)) }
        struct Numbers: Codable {
            var numbers: [UInt32]
            enum CodingKeys: Int, CodingKey { case numbers = 10 }
        }
        #expect(try EVTagCoder.decode(Numbers.self, from: many.bytes).numbers.count == 20_000)
    }
}
