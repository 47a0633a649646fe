/// Messages declared in Swift, encoded as libevent's rpcgen encodes them:
/// a `Codable` struct whose `CodingKeys` have integer values (the tags).
/// Each field is a record with its tag: `UInt32`/`Int32`/`Bool` as evtag
/// int, `UInt64`/`Int64`/`Int`/`UInt` as int64, `String` as a string,
/// `[UInt8]` as bytes, a nested message as a nested record, an array as one
/// record per element with the same tag (rpcgen's arrays), an optional as
/// absent when nil. Fixed-length bytes are `[UInt8]` checked by the message.
/// Unknown tags are skipped when decoding; a missing field is an error
/// naming it.
///
///     struct Kill: Codable, Equatable {
///         var weapon: String
///         var action: String
///         var howOften: UInt32?
///         enum CodingKeys: Int, CodingKey { case weapon = 65, action = 2, howOften = 3 }
///     }
///     let bytes = try EVTagCoder.encode(Kill(weapon: "dagger", action: "wave", howOften: 3))
public enum EVTagCoder {
    /// Deepest nesting of messages accepted when decoding.
    public static let maximumDepth = 32

    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = TagEncoder(depth: 0)
        try value.encode(to: encoder)
        return encoder.storage.bytes
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try T(from: try TagDecoder(bytes: bytes, depth: 0))
    }
}

/// Fixed-length bytes (rpcgen's `bytes name[N]`): encoded as the raw bytes;
/// decoding refuses any other length.
///
///     struct Digest: EVTagFixedBytes { static let length = 20; var bytes: [UInt8] }
public protocol EVTagFixedBytes: Codable, Sendable {
    static var length: Int { get }
    var bytes: [UInt8] { get }
    init(bytes: [UInt8])
}

extension EVTagFixedBytes {
    public func encode(to encoder: any Encoder) throws {
        guard bytes.count == Self.length else {
            throw EncodingError.invalidValue(bytes, .init(codingPath: encoder.codingPath, debugDescription: "\(bytes.count) bytes where \(Self.length) are fixed"))
        }
        var container = encoder.singleValueContainer()
        try container.encode(bytes)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let bytes = try container.decode([UInt8].self)
        guard bytes.count == Self.length else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(bytes.count) bytes where \(Self.length) are fixed"))
        }
        self.init(bytes: bytes)
    }
}

// MARK: encoding

private final class TagStorage {
    var bytes: [UInt8] = []
}

private struct TagEncoder: Encoder {
    let storage = TagStorage()
    let depth: Int
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(TagKeyedEncoder<Key>(storage: storage, depth: depth, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        preconditionFailure("evtag messages are keyed by integer tags")
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        preconditionFailure("evtag messages are keyed by integer tags")
    }
}

/// Arrays encode as one record per element.
private protocol TagRepeated {
    func encodeElements(tag: UInt32, into storage: TagStorage, depth: Int) throws
}

extension Array: TagRepeated where Element: Encodable {
    fileprivate func encodeElements(tag: UInt32, into storage: TagStorage, depth: Int) throws {
        for element in self { try TagKeyedEncoder<AnyTag>.encodeValue(element, tag: tag, into: storage, depth: depth) }
    }
}

private struct AnyTag: CodingKey {
    var stringValue: String
    var intValue: Int?
    init?(stringValue: String) { return nil }
    init?(intValue: Int) {
        self.intValue = intValue
        stringValue = "\(intValue)"
    }
}

private struct TagKeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let storage: TagStorage
    let depth: Int
    var codingPath: [any CodingKey]

    private func tag(_ key: Key) throws -> UInt32 {
        guard let value = key.intValue, value >= 0, value <= Int(UInt32.max) else {
            throw EncodingError.invalidValue(key.stringValue, .init(codingPath: codingPath + [key], debugDescription: "evtag fields need integer coding keys (the tags)"))
        }
        return UInt32(value)
    }

    mutating func encodeNil(forKey key: Key) throws {}

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try Self.encodeValue(value, tag: try tag(key), into: storage, depth: depth)
    }

    static func encodeValue<T: Encodable>(_ value: T, tag: UInt32, into storage: TagStorage, depth: Int) throws {
        var encoder = EVTagEncoder()
        switch value {
        case let v as UInt32 where T.self == UInt32.self: encoder.marshalInt(tag, v)
        case let v as Int32 where T.self == Int32.self: encoder.marshalInt(tag, UInt32(bitPattern: v))
        case let v as Bool where T.self == Bool.self: encoder.marshalInt(tag, v ? 1 : 0)
        case let v as UInt64 where T.self == UInt64.self: encoder.marshalInt64(tag, v)
        case let v as Int64 where T.self == Int64.self: encoder.marshalInt64(tag, UInt64(bitPattern: v))
        case let v as Int where T.self == Int.self: encoder.marshalInt64(tag, UInt64(bitPattern: Int64(v)))
        case let v as UInt where T.self == UInt.self: encoder.marshalInt64(tag, UInt64(v))
        case let v as String where T.self == String.self: encoder.marshalString(tag, v)
        // By static type: an empty array of anything casts to [UInt8] at run time.
        case let v as [UInt8] where T.self == [UInt8].self: encoder.record(tag, v)
        case let v as any EVTagFixedBytes:
            guard v.bytes.count == type(of: v).length else {
                throw EncodingError.invalidValue(v.bytes, .init(codingPath: [], debugDescription: "\(v.bytes.count) bytes where \(type(of: v).length) are fixed"))
            }
            encoder.record(tag, v.bytes)
        case let v as any TagRepeated:
            try v.encodeElements(tag: tag, into: storage, depth: depth)
            return
        default:
            guard depth < EVTagCoder.maximumDepth else {
                throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "messages nested too deeply"))
            }
            let nested = TagEncoder(depth: depth + 1)
            try value.encode(to: nested)
            encoder.record(tag, nested.storage.bytes)
        }
        storage.bytes += encoder.bytes
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        preconditionFailure("encode nested messages as values")
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        preconditionFailure("encode arrays as values")
    }

    mutating func superEncoder() -> any Encoder { preconditionFailure("no superclasses in evtag messages") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { preconditionFailure("no superclasses in evtag messages") }
}

// MARK: decoding

private struct TagDecoder: Decoder {
    /// Payloads by tag, in order of appearance.
    let records: [UInt32: [[UInt8]]]
    let depth: Int
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    init(bytes: [UInt8], depth: Int) throws {
        guard depth <= EVTagCoder.maximumDepth else { throw EVTagError.tooDeep }
        var decoder = EVTagDecoder(bytes)
        var records: [UInt32: [[UInt8]]] = [:]
        while !decoder.isAtEnd {
            let (tag, payload) = try decoder.record()
            records[tag, default: []].append(payload.remaining)
        }
        self.records = records
        self.depth = depth
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(TagKeyedDecoder<Key>(decoder: self, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "evtag messages are keyed by tags"))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        throw DecodingError.typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "evtag messages are keyed by tags"))
    }
}

/// Arrays decode from every record with their tag.
private protocol TagRepeatedDecodable {
    static func decodeElements(_ payloads: [[UInt8]], tag: UInt32, depth: Int, path: [any CodingKey]) throws -> Self
}

extension Array: TagRepeatedDecodable where Element: Decodable {
    fileprivate static func decodeElements(_ payloads: [[UInt8]], tag: UInt32, depth: Int, path: [any CodingKey]) throws -> Self {
        try payloads.map { try decodeValue(Element.self, $0, tag: tag, depth: depth, path: path) }
    }
}

private func decodeValue<T: Decodable>(_ type: T.Type, _ payload: [UInt8], tag: UInt32, depth: Int, path: [any CodingKey]) throws -> T {
    func integer() throws -> UInt32 {
        var decoder = EVTagDecoder(payload)
        let value = try decoder.int()
        guard decoder.isAtEnd else { throw EVTagError.badPayload(tag: tag, "bytes after the integer of \(path.map(\.stringValue).joined(separator: "."))") }
        return value
    }
    func integer64() throws -> UInt64 {
        var decoder = EVTagDecoder(payload)
        let value = try decoder.int64()
        guard decoder.isAtEnd else { throw EVTagError.badPayload(tag: tag, "bytes after the integer of \(path.map(\.stringValue).joined(separator: "."))") }
        return value
    }
    switch type {
    case is UInt32.Type: return try integer() as! T
    case is Int32.Type: return Int32(bitPattern: try integer()) as! T
    case is Bool.Type: return (try integer() != 0) as! T
    case is UInt64.Type: return try integer64() as! T
    case is Int64.Type: return Int64(bitPattern: try integer64()) as! T
    case is Int.Type: return Int(Int64(bitPattern: try integer64())) as! T
    case is UInt.Type: return UInt(try integer64()) as! T
    case is String.Type: return String(decoding: payload, as: UTF8.self) as! T
    case is [UInt8].Type: return payload as! T
    case let fixed as any EVTagFixedBytes.Type:
        guard payload.count == fixed.length else {
            throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "\(payload.count) bytes where \(fixed.length) are fixed"))
        }
        return fixed.init(bytes: payload) as! T
    default:
        var decoder = try TagDecoder(bytes: payload, depth: depth + 1)
        decoder.codingPath = path
        return try T(from: decoder)
    }
}

private struct TagKeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: TagDecoder
    var codingPath: [any CodingKey]

    var allKeys: [Key] { decoder.records.keys.compactMap { Key(intValue: Int($0)) } }

    private func tag(_ key: Key) throws -> UInt32 {
        guard let value = key.intValue, value >= 0, value <= Int(UInt32.max) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "evtag fields need integer coding keys"))
        }
        return UInt32(value)
    }

    func contains(_ key: Key) -> Bool {
        guard let tag = try? tag(key) else { return false }
        return decoder.records[tag] != nil
    }

    func decodeNil(forKey key: Key) throws -> Bool { !contains(key) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let tag = try tag(key)
        let payloads = decoder.records[tag] ?? []
        if let repeated = type as? any TagRepeatedDecodable.Type, type != [UInt8].self {
            return try repeated.decodeElements(payloads, tag: tag, depth: decoder.depth, path: codingPath + [key]) as! T
        }
        guard let payload = payloads.first else {
            throw DecodingError.keyNotFound(key, .init(
                codingPath: codingPath, debugDescription: "required field \(key.stringValue) (tag \(tag)) is missing"))
        }
        do {
            return try decodeValue(type, payload, tag: tag, depth: decoder.depth, path: codingPath + [key])
        } catch let error as EVTagError {
            // Name the field: a wrong type or bad bytes under it.
            throw DecodingError.dataCorrupted(.init(
                codingPath: codingPath + [key], debugDescription: "field \(key.stringValue) (tag \(tag)): \(error)", underlyingError: error))
        }
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        throw DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "decode nested messages as values"))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "decode arrays as values"))
    }

    func superDecoder() throws -> any Decoder { decoder }
    func superDecoder(forKey key: Key) throws -> any Decoder { decoder }
}
