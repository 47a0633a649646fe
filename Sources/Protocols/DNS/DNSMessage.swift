/// DNS messages (RFC 1035, 3596, 2782, 6891): parsing with every bound
/// checked and serializing with name compression. The parser is the part
/// of the resolver that meets untrusted bytes; it never traps, never loops
/// and rejects what RFC 1035 does not allow (label types 0x40–0xBF, forward
/// or looping compression pointers, labels over 63 bytes, names over 255).

/// A domain name: its labels as bytes, case preserved. Two names are equal
/// when they are equal ignoring ASCII case, as DNS compares them.
public struct DNSName: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let labels: [[UInt8]]

    public static let root = DNSName(uncheckedLabels: [])

    init(uncheckedLabels labels: [[UInt8]]) { self.labels = labels }

    /// Parses dotted text ("www.example.com", a trailing dot allowed).
    public init(_ text: String) throws(DNSError) {
        var labels: [[UInt8]] = []
        var current: [UInt8] = []
        let bytes = Array(text.utf8)
        if bytes == [UInt8(ascii: ".")] {
            self.init(uncheckedLabels: [])
            return
        }
        for (index, byte) in bytes.enumerated() {
            if byte == UInt8(ascii: ".") {
                guard !current.isEmpty else { throw .badName(text, "empty label") }
                labels.append(current)
                current = []
                if index == bytes.count - 1 { break }
            } else {
                current.append(byte)
            }
        }
        if !current.isEmpty { labels.append(current) }
        try self.init(labels: labels, text: text)
    }

    public init(labels: [[UInt8]], text: String? = nil) throws(DNSError) {
        var length = 1
        for label in labels {
            guard !label.isEmpty else { throw .badName(text ?? "?", "empty label") }
            guard label.count <= 63 else { throw .badName(text ?? "?", "label longer than 63 bytes") }
            length += label.count + 1
        }
        guard length <= 255 else { throw .badName(text ?? "?", "name longer than 255 bytes") }
        self.labels = labels
    }

    public init(stringLiteral value: String) {
        // Literals in code are checked at first use; a bad literal is a programming error.
        do {
            try self.init(value)
        } catch {
            preconditionFailure("bad DNS name literal \(value.debugDescription): \(error)")
        }
    }

    /// Dotted text without the trailing dot ("." for the root).
    public var description: String {
        if labels.isEmpty { return "." }
        return labels.map { label in
            String(decoding: label, as: UTF8.self)
        }.joined(separator: ".")
    }

    /// Bytes on the wire without compression.
    public var wireLength: Int { labels.reduce(1) { $0 + $1.count + 1 } }

    public static func == (a: DNSName, b: DNSName) -> Bool {
        guard a.labels.count == b.labels.count else { return false }
        for (x, y) in zip(a.labels, b.labels) where !Self.labelsEqual(x, y) { return false }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        for label in labels {
            hasher.combine(label.count)
            for byte in label { hasher.combine(Self.lower(byte)) }
        }
    }

    /// Byte-for-byte equality, case included (for 0x20 checking).
    public func isIdentical(to other: DNSName) -> Bool { labels == other.labels }

    /// Whether this name is `other` or below it.
    public func isSubdomain(of other: DNSName) -> Bool {
        guard labels.count >= other.labels.count else { return false }
        return zip(labels.suffix(other.labels.count), other.labels).allSatisfy { Self.labelsEqual($0, $1) }
    }

    /// This name followed by `suffix`.
    public func appending(_ suffix: DNSName) throws(DNSError) -> DNSName {
        try DNSName(labels: labels + suffix.labels, text: "\(self).\(suffix)")
    }

    /// The same name with letters in random case (0x20 bits, for spoofing resistance).
    public func randomizingCase(_ random: () -> UInt64) -> DNSName {
        var bits = random()
        var used = 0
        return DNSName(uncheckedLabels: labels.map { label in
            label.map { byte in
                guard (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) else { return byte }
                if used == 64 {
                    bits = random()
                    used = 0
                }
                let upper = bits & 1 == 1
                bits >>= 1
                used += 1
                return upper ? byte & ~0x20 : byte | 0x20
            }
        })
    }

    static func lower(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }

    static func labelsEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where lower(x) != lower(y) { return false }
        return true
    }
}

/// Record types (the ones with typed data, and any other by number).
public struct DNSRecordType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = DNSRecordType(rawValue: 1)
    public static let ns = DNSRecordType(rawValue: 2)
    public static let cname = DNSRecordType(rawValue: 5)
    public static let soa = DNSRecordType(rawValue: 6)
    public static let ptr = DNSRecordType(rawValue: 12)
    public static let mx = DNSRecordType(rawValue: 15)
    public static let txt = DNSRecordType(rawValue: 16)
    public static let aaaa = DNSRecordType(rawValue: 28)
    public static let srv = DNSRecordType(rawValue: 33)
    public static let opt = DNSRecordType(rawValue: 41)
    public static let any = DNSRecordType(rawValue: 255)

    static let names: [(String, DNSRecordType)] = [
        ("A", .a), ("NS", .ns), ("CNAME", .cname), ("SOA", .soa), ("PTR", .ptr), ("MX", .mx), ("TXT", .txt),
        ("AAAA", .aaaa), ("SRV", .srv), ("OPT", .opt), ("ANY", .any),
    ]

    /// "A", "AAAA", ..., or "TYPE123".
    public var description: String { Self.names.first { $0.1 == self }?.0 ?? "TYPE\(rawValue)" }

    /// From a name ("MX", "aaaa") or "TYPEn".
    public init?(name: String) {
        let upper = name.uppercased()
        if let known = Self.names.first(where: { $0.0 == upper }) {
            self = known.1
        } else if upper.hasPrefix("TYPE"), let number = UInt16(upper.dropFirst(4)) {
            self.init(rawValue: number)
        } else {
            return nil
        }
    }
}

/// Response codes.
public struct DNSResponseCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let noError = DNSResponseCode(rawValue: 0)
    public static let formatError = DNSResponseCode(rawValue: 1)
    public static let serverFailure = DNSResponseCode(rawValue: 2)
    public static let nameError = DNSResponseCode(rawValue: 3)
    public static let notImplemented = DNSResponseCode(rawValue: 4)
    public static let refused = DNSResponseCode(rawValue: 5)
    public var description: String {
        switch rawValue {
        case 0: "NOERROR"
        case 1: "FORMERR"
        case 2: "SERVFAIL"
        case 3: "NXDOMAIN"
        case 4: "NOTIMP"
        case 5: "REFUSED"
        default: "RCODE\(rawValue)"
        }
    }
}

/// A record's data, typed for the types a client uses.
public enum DNSRecordData: Sendable, Hashable, CustomStringConvertible {
    case a([UInt8])  // 4 bytes
    case aaaa([UInt8])  // 16 bytes
    case cname(DNSName)
    case ptr(DNSName)
    case ns(DNSName)
    case mx(preference: UInt16, exchange: DNSName)
    case txt([[UInt8]])
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
    case other([UInt8])

    public var description: String {
        switch self {
        case .a(let bytes): return bytes.map(String.init).joined(separator: ".")
        case .aaaa(let bytes): return DNSRecordData.ipv6Text(bytes)
        case .cname(let name), .ptr(let name), .ns(let name): return "\(name)."
        case .mx(let preference, let exchange): return "\(preference) \(exchange)."
        case .txt(let strings):
            return strings.map { "\"" + String(decoding: $0, as: UTF8.self) + "\"" }.joined(separator: " ")
        case .srv(let priority, let weight, let port, let target): return "\(priority) \(weight) \(port) \(target)."
        case .other(let bytes): return "\\# \(bytes.count) " + bytes.map { String($0, radix: 16) }.joined()
        }
    }

    static func ipv6Text(_ bytes: [UInt8]) -> String {
        guard bytes.count == 16 else { return "?" }
        let groups = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        // The longest run of zero groups (two or more) becomes "::".
        var bestStart = -1, bestLength = 0, start = -1
        for index in 0...8 {
            if index < 8 && groups[index] == 0 {
                if start < 0 { start = index }
            } else if start >= 0 {
                if index - start > bestLength && index - start >= 2 { (bestStart, bestLength) = (start, index - start) }
                start = -1
            }
        }
        func hex(_ range: Range<Int>) -> String { groups[range].map { String($0, radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

/// One resource record.
public struct DNSRecord: Sendable, Hashable, CustomStringConvertible {
    public var name: DNSName
    public var type: DNSRecordType
    public var recordClass: UInt16
    public var ttl: UInt32
    public var data: DNSRecordData

    public init(name: DNSName, type: DNSRecordType, ttl: UInt32, data: DNSRecordData, recordClass: UInt16 = 1) {
        self.name = name
        self.type = type
        self.recordClass = recordClass
        self.ttl = ttl
        self.data = data
    }

    public static func a(_ name: DNSName, _ address: [UInt8], ttl: UInt32 = 300) -> DNSRecord {
        DNSRecord(name: name, type: .a, ttl: ttl, data: .a(address))
    }
    public static func aaaa(_ name: DNSName, _ address: [UInt8], ttl: UInt32 = 300) -> DNSRecord {
        DNSRecord(name: name, type: .aaaa, ttl: ttl, data: .aaaa(address))
    }

    public var description: String { "\(name).\t\(ttl)\t\(type)\t\(data)" }
}

public struct DNSQuestion: Sendable, Hashable, CustomStringConvertible {
    public var name: DNSName
    public var type: DNSRecordType
    public var questionClass: UInt16 = 1
    public init(name: DNSName, type: DNSRecordType, questionClass: UInt16 = 1) {
        self.name = name
        self.type = type
        self.questionClass = questionClass
    }
    public var description: String { "\(name). \(type)" }
}

/// A whole message.
public struct DNSMessage: Sendable, Hashable {
    public var id: UInt16 = 0
    public var isResponse = false
    public var opcode: UInt8 = 0
    public var isAuthoritative = false
    public var isTruncated = false
    public var recursionDesired = true
    public var recursionAvailable = false
    public var responseCode: DNSResponseCode = .noError
    public var questions: [DNSQuestion] = []
    public var answers: [DNSRecord] = []
    public var authorities: [DNSRecord] = []
    public var additionals: [DNSRecord] = []
    /// EDNS0: the UDP payload size the sender accepts (from/to an OPT record).
    public var ednsUDPSize: UInt16?

    public init() {}

    public static let maximumMessage = 65_535
}

/// Why a name or a message was refused.
public enum DNSError: Error, Sendable, Hashable, CustomStringConvertible {
    case badName(String, String)
    case truncatedMessage(at: Int)
    case badLabelType(UInt8, at: Int)
    case badPointer(at: Int)
    case labelTooLong(at: Int)
    case nameTooLong(at: Int)
    case badRecordData(DNSRecordType, String)
    case countsExceedMessage
    case trailingBytes(Int)
    case messageTooLarge(Int)

    public var description: String {
        switch self {
        case .badName(let name, let why): "bad name \(name.debugDescription): \(why)"
        case .truncatedMessage(let offset): "message ends early (at byte \(offset))"
        case .badLabelType(let byte, let offset): "label type 0x\(String(byte, radix: 16)) at byte \(offset) is not allowed"
        case .badPointer(let offset): "compression pointer at byte \(offset) does not point back to an earlier name"
        case .labelTooLong(let offset): "label longer than 63 bytes at byte \(offset)"
        case .nameTooLong(let offset): "name longer than 255 bytes at byte \(offset)"
        case .badRecordData(let type, let why): "bad \(type) record data: \(why)"
        case .countsExceedMessage: "section counts announce more records than the message can hold"
        case .trailingBytes(let count): "\(count) bytes after the last record"
        case .messageTooLarge(let size): "message of \(size) bytes is larger than 65535"
        }
    }
}

// MARK: parsing

extension DNSMessage {
    /// Parses a whole message; throws on anything malformed.
    public static func parse(_ bytes: [UInt8]) throws(DNSError) -> DNSMessage {
        var reader = DNSReader(bytes)
        var message = DNSMessage()
        let id = try reader.u16()
        let flags = try reader.u16()
        let counts = [try reader.u16(), try reader.u16(), try reader.u16(), try reader.u16()]
        // Each question takes at least 5 bytes, each record at least 11.
        let least = Int(counts[0]) * 5 + (Int(counts[1]) + Int(counts[2]) + Int(counts[3])) * 11
        guard least <= bytes.count - 12 else { throw .countsExceedMessage }
        message.id = id
        message.isResponse = flags & 0x8000 != 0
        message.opcode = UInt8((flags >> 11) & 0xF)
        message.isAuthoritative = flags & 0x0400 != 0
        message.isTruncated = flags & 0x0200 != 0
        message.recursionDesired = flags & 0x0100 != 0
        message.recursionAvailable = flags & 0x0080 != 0
        message.responseCode = DNSResponseCode(rawValue: UInt8(flags & 0xF))
        for _ in 0..<counts[0] {
            let name = try reader.name()
            message.questions.append(DNSQuestion(name: name, type: DNSRecordType(rawValue: try reader.u16()), questionClass: try reader.u16()))
        }
        for section in 1...3 {
            for _ in 0..<counts[section] {
                let record = try reader.record()
                if record.type == .opt {
                    message.ednsUDPSize = UInt16(record.recordClass)
                    if message.ednsUDPSize ?? 0 < 512 { message.ednsUDPSize = 512 }
                    // The extended rcode's upper bits live in the TTL.
                    let extended = UInt8(truncatingIfNeeded: record.ttl >> 24)
                    if extended != 0 {
                        message.responseCode = DNSResponseCode(rawValue: message.responseCode.rawValue | (extended << 4))
                    }
                    continue
                }
                switch section {
                case 1: message.answers.append(record)
                case 2: message.authorities.append(record)
                default: message.additionals.append(record)
                }
            }
        }
        guard reader.offset == bytes.count else { throw .trailingBytes(bytes.count - reader.offset) }
        return message
    }
}

/// Bounds-checked reading of a message.
struct DNSReader {
    let bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func u8() throws(DNSError) -> UInt8 {
        guard offset < bytes.count else { throw .truncatedMessage(at: offset) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() throws(DNSError) -> UInt16 {
        guard offset + 2 <= bytes.count else { throw .truncatedMessage(at: offset) }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func u32() throws(DNSError) -> UInt32 {
        UInt32(try u16()) << 16 | UInt32(try u16())
    }

    mutating func take(_ count: Int) throws(DNSError) -> [UInt8] {
        guard count >= 0, offset + count <= bytes.count else { throw .truncatedMessage(at: offset) }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// A name at the current offset, following compression pointers. A
    /// pointer must point strictly before the label it replaces, so pointers
    /// only go backwards and cannot loop.
    mutating func name() throws(DNSError) -> DNSName {
        var labels: [[UInt8]] = []
        var length = 1
        var position = offset
        var resumeAt: Int?
        var lowestJumpTarget = offset
        while true {
            guard position < bytes.count else { throw .truncatedMessage(at: position) }
            let byte = bytes[position]
            switch byte & 0xC0 {
            case 0x00:
                if byte == 0 {
                    position += 1
                    offset = resumeAt ?? position
                    return DNSName(uncheckedLabels: labels)
                }
                let count = Int(byte)
                guard position + 1 + count <= bytes.count else { throw .truncatedMessage(at: position) }
                length += count + 1
                guard length <= 255 else { throw .nameTooLong(at: position) }
                labels.append(Array(bytes[(position + 1)..<(position + 1 + count)]))
                position += 1 + count
            case 0xC0:
                guard position + 1 < bytes.count else { throw .truncatedMessage(at: position) }
                let target = Int(byte & 0x3F) << 8 | Int(bytes[position + 1])
                // Strictly backwards from every label read so far: no loops, no forward references.
                guard target < lowestJumpTarget, target < position else { throw .badPointer(at: position) }
                if resumeAt == nil { resumeAt = position + 2 }
                lowestJumpTarget = target
                position = target
            default:
                // 0x40 (extended label types, RFC 6891 deprecated them) and 0x80 (reserved).
                throw .badLabelType(byte, at: position)
            }
        }
    }

    mutating func record() throws(DNSError) -> DNSRecord {
        let name = try name()
        let type = DNSRecordType(rawValue: try u16())
        let recordClass = try u16()
        let ttl = try u32()
        let length = Int(try u16())
        guard offset + length <= bytes.count else { throw .truncatedMessage(at: offset) }
        let end = offset + length
        let data: DNSRecordData
        switch type {
        case .a:
            guard length == 4 else { throw .badRecordData(type, "\(length) bytes, not 4") }
            data = .a(try take(4))
        case .aaaa:
            guard length == 16 else { throw .badRecordData(type, "\(length) bytes, not 16") }
            data = .aaaa(try take(16))
        case .cname, .ptr, .ns:
            let target = try nameWithin(end, type)
            data = type == .cname ? .cname(target) : type == .ptr ? .ptr(target) : .ns(target)
        case .mx:
            let preference = try u16()
            data = .mx(preference: preference, exchange: try nameWithin(end, type))
        case .srv:
            let priority = try u16(), weight = try u16(), port = try u16()
            data = .srv(priority: priority, weight: weight, port: port, target: try nameWithin(end, type))
        case .txt:
            var strings: [[UInt8]] = []
            while offset < end {
                let count = Int(try u8())
                guard offset + count <= end else { throw .badRecordData(type, "string runs past the record") }
                strings.append(try take(count))
            }
            data = .txt(strings)
        default:
            data = .other(try take(length))
        }
        guard offset == end else { throw .badRecordData(type, "\(end - offset) bytes left over in the record") }
        return DNSRecord(name: name, type: type, ttl: ttl, data: data, recordClass: recordClass)
    }

    private mutating func nameWithin(_ end: Int, _ type: DNSRecordType) throws(DNSError) -> DNSName {
        let name = try name()
        guard offset <= end else { throw .badRecordData(type, "name runs past the record") }
        return name
    }
}

// MARK: serializing

extension DNSMessage {
    /// The wire form, names compressed. With `limit`, records that do not
    /// fit are left out (answers last to first... whole sections from the
    /// end) and TC is set, as a UDP reply over the client's size must be.
    public func serialized(limit: Int = DNSMessage.maximumMessage) throws(DNSError) -> [UInt8] {
        var writer = DNSWriter()
        let full = try writer.message(self, truncatedTo: nil)
        if full.count <= limit { return full }
        // Keep the header and question, and as many answers as fit.
        var truncated = self
        truncated.isTruncated = true
        truncated.authorities = []
        truncated.additionals = []
        while true {
            var retry = DNSWriter()
            let bytes = try retry.message(truncated, truncatedTo: nil)
            if bytes.count <= limit || truncated.answers.isEmpty { return bytes }
            truncated.answers.removeLast()
        }
    }
}

struct DNSWriter {
    var bytes: [UInt8] = []
    /// Lower-cased name suffixes already written, and where.
    var offsets: [[[UInt8]]: Int] = [:]

    mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    mutating func u32(_ value: UInt32) {
        u16(UInt16(value >> 16))
        u16(UInt16(value & 0xFFFF))
    }

    mutating func name(_ name: DNSName, compress: Bool = true) {
        let labels = name.labels
        for index in labels.indices {
            let suffix = labels[index...].map { $0.map(DNSName.lower) }
            if compress, let at = offsets[suffix] {
                u16(0xC000 | UInt16(at))
                return
            }
            if bytes.count < 0x4000 { offsets[suffix] = bytes.count }
            bytes.append(UInt8(labels[index].count))
            bytes += labels[index]
        }
        bytes.append(0)
    }

    mutating func record(_ record: DNSRecord) throws(DNSError) {
        name(record.name)
        u16(record.type.rawValue)
        u16(record.recordClass)
        u32(record.ttl)
        let lengthAt = bytes.count
        u16(0)
        let start = bytes.count
        switch record.data {
        case .a(let address):
            guard address.count == 4 else { throw .badRecordData(.a, "\(address.count) bytes, not 4") }
            bytes += address
        case .aaaa(let address):
            guard address.count == 16 else { throw .badRecordData(.aaaa, "\(address.count) bytes, not 16") }
            bytes += address
        case .cname(let target), .ptr(let target), .ns(let target):
            name(target)
        case .mx(let preference, let exchange):
            u16(preference)
            name(exchange)
        case .srv(let priority, let weight, let port, let target):
            u16(priority)
            u16(weight)
            u16(port)
            // RFC 2782: the target is not compressed.
            name(target, compress: false)
        case .txt(let strings):
            for string in strings {
                guard string.count <= 255 else { throw .badRecordData(.txt, "a string longer than 255 bytes") }
                bytes.append(UInt8(string.count))
                bytes += string
            }
        case .other(let data):
            bytes += data
        }
        let length = bytes.count - start
        guard length <= 0xFFFF else { throw .badRecordData(record.type, "longer than 65535 bytes") }
        bytes[lengthAt] = UInt8(length >> 8)
        bytes[lengthAt + 1] = UInt8(length & 0xFF)
    }

    mutating func message(_ message: DNSMessage, truncatedTo: Int?) throws(DNSError) -> [UInt8] {
        u16(message.id)
        var flags: UInt16 = 0
        if message.isResponse { flags |= 0x8000 }
        flags |= UInt16(message.opcode & 0xF) << 11
        if message.isAuthoritative { flags |= 0x0400 }
        if message.isTruncated { flags |= 0x0200 }
        if message.recursionDesired { flags |= 0x0100 }
        if message.recursionAvailable { flags |= 0x0080 }
        flags |= UInt16(message.responseCode.rawValue & 0xF)
        u16(flags)
        u16(UInt16(message.questions.count))
        u16(UInt16(message.answers.count))
        u16(UInt16(message.authorities.count))
        u16(UInt16(message.additionals.count + (message.ednsUDPSize == nil ? 0 : 1)))
        for question in message.questions {
            name(question.name)
            u16(question.type.rawValue)
            u16(question.questionClass)
        }
        for record in message.answers + message.authorities + message.additionals { try self.record(record) }
        if let size = message.ednsUDPSize {
            // OPT: root name, type 41, class = UDP size, TTL = extended rcode (the
            // upper bits of the response code), version 0, flags 0.
            bytes.append(0)
            u16(DNSRecordType.opt.rawValue)
            u16(size)
            u32(UInt32(message.responseCode.rawValue >> 4) << 24)
            u16(0)
        }
        guard bytes.count <= DNSMessage.maximumMessage else { throw .messageTooLarge(bytes.count) }
        return bytes
    }
}
