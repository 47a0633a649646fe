/// A URI (libevent's `evhttp_uri`): scheme, userinfo, host (bracketed IPv6
/// included), port, path, query, fragment. Strict parsing follows RFC 3986;
/// `.nonConformant` (libevent's `EVHTTP_URI_NONCONFORMANT`) accepts bytes
/// RFC 3986 does not allow in paths and queries (spaces, `"`, `<`, ...).
public struct HTTPURI: Sendable, Hashable, CustomStringConvertible {
    public var scheme: String?
    public var userinfo: String?
    public var host: String?
    public var port: Int?
    public var path: String = ""
    public var query: String?
    public var fragment: String?

    public enum Mode: Sendable { case strict, nonConformant }

    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public let reason: String
        public var description: String { "bad URI: \(reason)" }
    }

    public init() {}

    public init(_ text: String, mode: Mode = .strict) throws(ParseError) {
        var rest = Substring(text)
        func fail(_ reason: String) -> ParseError { ParseError(reason: reason) }
        // fragment, then query
        if let hash = rest.firstIndex(of: "#") {
            fragment = String(rest[rest.index(after: hash)...])
            rest = rest[..<hash]
        }
        if let question = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: question)...])
            rest = rest[..<question]
        }
        // scheme
        if let colon = rest.firstIndex(of: ":"), let first = rest.first, first.isASCII, first.isLetter,
            rest[..<colon].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }),
            !rest[..<colon].contains("/")
        {
            scheme = String(rest[..<colon])
            rest = rest[rest.index(after: colon)...]
        }
        // authority
        if rest.hasPrefix("//") {
            rest = rest.dropFirst(2)
            let end = rest.firstIndex(of: "/") ?? rest.endIndex
            var authority = rest[..<end]
            rest = rest[end...]
            if let at = authority.lastIndex(of: "@") {
                userinfo = String(authority[..<at])
                authority = authority[authority.index(after: at)...]
            }
            if authority.hasPrefix("[") {
                guard let close = authority.firstIndex(of: "]") else { throw fail("unterminated IPv6 literal") }
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                let after = authority[authority.index(after: close)...]
                if !after.isEmpty {
                    guard after.hasPrefix(":") else { throw fail("bytes after an IPv6 literal") }
                    try parsePort(after.dropFirst())
                }
            } else if let colon = authority.lastIndex(of: ":") {
                host = String(authority[..<colon])
                try parsePort(authority[authority.index(after: colon)...])
            } else {
                host = String(authority)
            }
            if let host, host.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "/") }) {
                throw fail("invalid host")
            }
        }
        path = String(rest)
        if mode == .strict {
            try Self.check(path, allowed: Self.pathTable, what: "path")
            if let query { try Self.check(query, allowed: Self.queryTable, what: "query") }
            if let fragment { try Self.check(fragment, allowed: Self.queryTable, what: "fragment") }
        } else {
            for part in [path, query ?? "", fragment ?? ""] where part.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
                throw fail("control byte in the URI")
            }
        }
    }

    private mutating func parsePort(_ text: Substring) throws(ParseError) {
        if text.isEmpty { return }
        guard text.count <= 5, let value = Int(text), value >= 0, value <= 65_535 else {
            throw ParseError(reason: "invalid port \(String(text).debugDescription)")
        }
        port = value
    }

    static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
    static let subDelims = Set("!$&'()*+,;=".utf8)
    static let pathBytes = unreserved.union(subDelims).union(":@/%".utf8)
    static let queryBytes = pathBytes.union("?".utf8)
    /// The same sets as tables indexed by byte (checked on every request).
    static let pathTable = table(pathBytes)
    static let queryTable = table(queryBytes)

    private static func table(_ set: Set<UInt8>) -> [Bool] { (0...255).map { set.contains(UInt8($0)) } }

    private static func check(_ text: String, allowed: [Bool], what: String) throws(ParseError) {
        // Walks the UTF-8 view in place (no copy): a byte not allowed, or a
        // "%" not followed by two hex digits, is refused.
        var escape = 0  // hex digits still expected after a "%"
        for byte in text.utf8 {
            if escape > 0 {
                guard hex(byte) != nil else { throw ParseError(reason: "bad percent-escape in the \(what)") }
                escape -= 1
                continue
            }
            guard allowed[Int(byte)] else { throw ParseError(reason: "byte 0x\(String(byte, radix: 16)) not allowed in the \(what)") }
            if byte == UInt8(ascii: "%") { escape = 2 }
        }
        if escape > 0 { throw ParseError(reason: "bad percent-escape in the \(what)") }
    }

    public var description: String {
        var text = ""
        if let scheme { text += scheme + ":" }
        if host != nil || userinfo != nil || port != nil {
            text += "//"
            if let userinfo { text += userinfo + "@" }
            if let host { text += host.contains(":") ? "[\(host)]" : host }
            if let port { text += ":\(port)" }
        }
        text += path
        if let query { text += "?" + query }
        if let fragment { text += "#" + fragment }
        return text
    }

    /// The path and query, as a request target.
    public var requestTarget: String { (path.isEmpty ? "/" : path) + (query.map { "?" + $0 } ?? "") }

    /// `reference` resolved against this URI (RFC 3986 5.2).
    public func resolving(_ reference: HTTPURI) -> HTTPURI {
        var result = HTTPURI()
        if reference.scheme != nil {
            result = reference
            result.path = Self.removeDotSegments(reference.path)
            return result
        }
        result.scheme = scheme
        if reference.host != nil {
            result.userinfo = reference.userinfo
            result.host = reference.host
            result.port = reference.port
            result.path = Self.removeDotSegments(reference.path)
            result.query = reference.query
        } else {
            result.userinfo = userinfo
            result.host = host
            result.port = port
            if reference.path.isEmpty {
                result.path = path
                result.query = reference.query ?? query
            } else {
                if reference.path.hasPrefix("/") {
                    result.path = Self.removeDotSegments(reference.path)
                } else {
                    let base = host != nil && path.isEmpty ? "/" : String(path[..<(path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex)])
                    result.path = Self.removeDotSegments(base + reference.path)
                }
                result.query = reference.query
            }
        }
        result.fragment = reference.fragment
        return result
    }

    static func removeDotSegments(_ path: String) -> String {
        var output: [Substring] = []
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        for (index, segment) in segments.enumerated() {
            let last = index == segments.count - 1
            switch segment {
            case ".":
                if last { output.append("") }
            case "..":
                if output.count > 1 || (output.count == 1 && !output[0].isEmpty) { output.removeLast() }
                if last { output.append("") }
            default:
                output.append(segment)
            }
        }
        var joined = output.joined(separator: "/")
        if path.hasPrefix("/") && !joined.hasPrefix("/") { joined = "/" + joined }
        return joined
    }

    // MARK: helpers (libevent's evhttp_encode_uri, evhttp_decode_uri, evhttp_parse_query, evhttp_htmlescape)

    static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }

    /// Percent-encodes everything but unreserved bytes; `spaceAsPlus` writes " " as "+".
    public static func percentEncode(_ text: String, spaceAsPlus: Bool = false) -> String {
        var output = ""
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                output.unicodeScalars.append(UnicodeScalar(byte))
            } else if byte == 0x20 && spaceAsPlus {
                output += "+"
            } else {
                output += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xF, radix: 16, uppercase: true)
            }
        }
        return output
    }

    /// Decodes %XX escapes (and "+" as space when asked); a malformed escape is kept as it is.
    public static func percentDecode(_ text: String, plusAsSpace: Bool = false) -> String {
        let bytes = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%"), index + 2 < bytes.count, let high = hex(bytes[index + 1]), let low = hex(bytes[index + 2]) {
                output.append(high << 4 | low)
                index += 3
            } else {
                output.append(plusAsSpace && byte == UInt8(ascii: "+") ? 0x20 : byte)
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// "a=1&b=x+y" → [("a", "1"), ("b", "x y")] (libevent's `evhttp_parse_query_str`).
    public static func parseQuery(_ query: String) -> [(name: String, value: String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(parts[0]), plusAsSpace: true)
            let value = parts.count > 1 ? percentDecode(String(parts[1]), plusAsSpace: true) : ""
            return (name, value)
        }
    }

    /// `<`, `>`, `"`, `'` and `&` as entities (libevent's `evhttp_htmlescape`).
    public static func htmlEscape(_ text: String) -> String {
        var output = ""
        for character in text {
            switch character {
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            case "\"": output += "&quot;"
            case "'": output += "&#039;"
            case "&": output += "&amp;"
            default: output.append(character)
            }
        }
        return output
    }
}
