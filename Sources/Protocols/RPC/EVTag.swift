/// libevent 2.1's tagged encoding (`event_tagging`, "evtag"), byte for byte:
/// tags in 7-bit groups (least significant first, high bit = more follows);
/// integers as a nibble count and nibbles (least significant first); records
/// as tag, length, payload.

/// Why evtag bytes could not be decoded.
public enum EVTagError: Error, Sendable, Hashable, CustomStringConvertible {
    case truncated(at: Int)
    case tagTooLong(at: Int)
    case integerTooLong(nibbles: Int, at: Int)
    case lengthPastEnd(length: Int, at: Int)
    case unexpectedTag(expected: UInt32, found: UInt32, at: Int)
    case badPayload(tag: UInt32, String)
    case missingField(String, tag: UInt32)
    case tooDeep

    public var description: String {
        switch self {
        case .truncated(let at): "evtag data ends early (at byte \(at))"
        case .tagTooLong(let at): "tag at byte \(at) is longer than 32 bits"
        case .integerTooLong(let nibbles, let at): "integer at byte \(at) has \(nibbles) nibbles, more than its type holds"
        case .lengthPastEnd(let length, let at): "record at byte \(at) claims \(length) bytes past the end"
        case .unexpectedTag(let expected, let found, let at): "expected tag \(expected), found \(found) at byte \(at)"
        case .badPayload(let tag, let why): "tag \(tag): \(why)"
        case .missingField(let name, let tag): "required field \(name) (tag \(tag)) is missing"
        case .tooDeep: "messages nested too deeply"
        }
    }
}

/// Appends evtag encodings to a byte array.
public struct EVTagEncoder: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// A tag (libevent's `evtag_encode_tag`).
    public mutating func tag(_ tag: UInt32) {
        var value = tag
        repeat {
            let group = UInt8(value & 0x7F)
            value >>= 7
            bytes.append(value != 0 ? group | 0x80 : group)
        } while value != 0
    }

    /// A 32-bit integer (libevent's `evtag_encode_int`).
    public mutating func int(_ value: UInt32) { integer(UInt64(value)) }

    /// A 64-bit integer (libevent's `evtag_encode_int64`).
    public mutating func int64(_ value: UInt64) { integer(value) }

    private mutating func integer(_ value: UInt64) {
        var nibbles: [UInt8] = []
        var rest = value
        repeat {
            nibbles.append(UInt8(rest & 0xF))
            rest >>= 4
        } while rest != 0
        // First byte: (count - 1) in the high nibble, the first nibble low.
        bytes.append(UInt8(nibbles.count - 1) << 4 | nibbles[0])
        var index = 1
        while index < nibbles.count {
            let high = nibbles[index]
            let low = index + 1 < nibbles.count ? nibbles[index + 1] : 0
            bytes.append(high << 4 | low)
            index += 2
        }
    }

    /// A record: tag, payload length, payload (libevent's `evtag_marshal`).
    public mutating func record(_ tag: UInt32, _ payload: some Collection<UInt8>) {
        self.tag(tag)
        int(UInt32(payload.count))
        bytes += payload
    }

    /// `evtag_marshal_int`.
    public mutating func marshalInt(_ tag: UInt32, _ value: UInt32) {
        var payload = EVTagEncoder()
        payload.int(value)
        record(tag, payload.bytes)
    }

    /// `evtag_marshal_int64`.
    public mutating func marshalInt64(_ tag: UInt32, _ value: UInt64) {
        var payload = EVTagEncoder()
        payload.int64(value)
        record(tag, payload.bytes)
    }

    /// `evtag_marshal_string`: the bytes, no terminating NUL.
    public mutating func marshalString(_ tag: UInt32, _ value: String) { record(tag, Array(value.utf8)) }

    /// `evtag_marshal_timeval`: seconds then microseconds, as integers.
    public mutating func marshalTimeval(_ tag: UInt32, seconds: UInt32, microseconds: UInt32) {
        var payload = EVTagEncoder()
        payload.int(seconds)
        payload.int(microseconds)
        record(tag, payload.bytes)
    }
}

/// Reads evtag encodings from bytes, every bound checked.
public struct EVTagDecoder: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let end: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
        end = bytes.count
    }

    init(_ bytes: [UInt8], from start: Int, to end: Int) {
        self.bytes = bytes
        offset = start
        self.end = end
    }

    public var isAtEnd: Bool { offset >= end }

    /// `evtag_decode_tag`.
    public mutating func tag() throws(EVTagError) -> UInt32 {
        let start = offset
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw .truncated(at: offset) }
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
            guard shift < 35 else { throw .tagTooLong(at: start) }
        }
        guard value <= UInt64(UInt32.max) else { throw .tagTooLong(at: start) }
        return UInt32(value)
    }

    /// `evtag_decode_int`.
    public mutating func int() throws(EVTagError) -> UInt32 { UInt32(try integer(maxNibbles: 8)) }

    /// `evtag_decode_int64`.
    public mutating func int64() throws(EVTagError) -> UInt64 { try integer(maxNibbles: 16) }

    private mutating func integer(maxNibbles: Int) throws(EVTagError) -> UInt64 {
        let start = offset
        guard offset < end else { throw .truncated(at: offset) }
        let first = bytes[offset]
        let count = Int(first >> 4) + 1
        guard count <= maxNibbles else { throw .integerTooLong(nibbles: count, at: start) }
        let length = 1 + count / 2  // the first byte holds one nibble, then two per byte
        guard offset + length <= end else { throw .truncated(at: offset) }
        var value = UInt64(first & 0xF)
        var shift: UInt64 = 4
        var index = 1
        while index < count {
            let byte = bytes[offset + 1 + (index - 1) / 2]
            let nibble = (index - 1) % 2 == 0 ? byte >> 4 : byte & 0xF
            value |= UInt64(nibble) << shift
            shift += 4
            index += 1
        }
        offset += length
        return value
    }

    /// A record: its tag and a decoder over its payload (skips the payload here).
    public mutating func record() throws(EVTagError) -> (tag: UInt32, payload: EVTagDecoder) {
        let start = offset
        let tag = try self.tag()
        let length = Int(try int())
        guard offset + length <= end else { throw .lengthPastEnd(length: length, at: start) }
        let payload = EVTagDecoder(bytes, from: offset, to: offset + length)
        offset += length
        return (tag, payload)
    }

    /// The rest of this decoder's bytes.
    public var remaining: [UInt8] { Array(bytes[offset..<end]) }

    /// A record with `tag` holding one integer (`evtag_unmarshal_int`).
    public mutating func unmarshalInt(_ expected: UInt32) throws(EVTagError) -> UInt32 {
        let start = offset
        var (tag, payload) = try record()
        guard tag == expected else { throw .unexpectedTag(expected: expected, found: tag, at: start) }
        let value = try payload.int()
        guard payload.isAtEnd else { throw .badPayload(tag: tag, "bytes after the integer") }
        return value
    }

    public mutating func unmarshalInt64(_ expected: UInt32) throws(EVTagError) -> UInt64 {
        let start = offset
        var (tag, payload) = try record()
        guard tag == expected else { throw .unexpectedTag(expected: expected, found: tag, at: start) }
        let value = try payload.int64()
        guard payload.isAtEnd else { throw .badPayload(tag: tag, "bytes after the integer") }
        return value
    }

    public mutating func unmarshalString(_ expected: UInt32) throws(EVTagError) -> String {
        let start = offset
        let (tag, payload) = try record()
        guard tag == expected else { throw .unexpectedTag(expected: expected, found: tag, at: start) }
        return String(decoding: payload.remaining, as: UTF8.self)
    }

    public mutating func unmarshalTimeval(_ expected: UInt32) throws(EVTagError) -> (seconds: UInt32, microseconds: UInt32) {
        let start = offset
        var (tag, payload) = try record()
        guard tag == expected else { throw .unexpectedTag(expected: expected, found: tag, at: start) }
        let seconds = try payload.int()
        let microseconds = try payload.int()
        guard payload.isAtEnd else { throw .badPayload(tag: tag, "bytes after the timeval") }
        return (seconds, microseconds)
    }
}
