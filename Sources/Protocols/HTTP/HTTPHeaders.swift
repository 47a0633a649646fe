/// HTTP header fields: ordered, names compared without regard to ASCII case,
/// repeated fields kept (libevent's `evkeyvalq`).
public struct HTTPHeaders: Sendable, Hashable, Sequence, CustomStringConvertible {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}

    public init(_ fields: [(String, String)]) {
        for (name, value) in fields { add(name, value) }
    }

    public static func == (a: HTTPHeaders, b: HTTPHeaders) -> Bool {
        a.fields.count == b.fields.count && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in fields {
            hasher.combine(field.name.lowercased())
            hasher.combine(field.value)
        }
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public var count: Int { fields.count }

    /// Adds a field at the end (repeated names are kept).
    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    mutating func reserveCapacity(_ count: Int) { fields.reserveCapacity(count) }

    /// Empties the fields, keeping their storage.
    mutating func removeAll() { fields.removeAll(keepingCapacity: true) }

    /// Replaces every field named `name` with one.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { Self.same($0.name, name) }
    }

    /// The first value of `name`.
    public subscript(_ name: String) -> String? { fields.first { Self.same($0.name, name) }?.value }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] { fields.filter { Self.same($0.name, name) }.map(\.value) }

    public func contains(_ name: String) -> Bool { fields.contains { Self.same($0.name, name) } }

    /// Whether a comma-separated field (Connection, Transfer-Encoding)
    /// carries `token`, in any case.
    public func hasToken(_ name: String, _ token: String) -> Bool {
        for field in fields where Self.same(field.name, name) {
            // Scan the comma-separated items without allocating.
            var utf8 = field.value.utf8[...]
            while !utf8.isEmpty {
                let end = utf8.firstIndex(of: UInt8(ascii: ",")) ?? utf8.endIndex
                var item = utf8[utf8.startIndex..<end]
                while let first = item.first, first == 0x20 || first == 0x09 { item = item.dropFirst() }
                while let last = item.last, last == 0x20 || last == 0x09 { item = item.dropLast() }
                if Self.same(Substring(item), token) { return true }
                utf8 = end == utf8.endIndex ? utf8[end...] : utf8[utf8.index(after: end)...]
            }
        }
        return false
    }

    /// Whether a field can be sent as it is: a token name, a value without CR, LF or NUL.
    public static func isValidField(name: String, value: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy(HTTPSyntax.isToken) && !value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
    }

    /// Drops every field that could not be sent safely.
    public mutating func removeInvalidFields() {
        if fields.allSatisfy({ Self.isValidField(name: $0.name, value: $0.value) }) { return }
        fields.removeAll { !Self.isValidField(name: $0.name, value: $0.value) }
    }

    /// How many fields are named `name`.
    public func count(of name: String) -> Int { fields.reduce(0) { $0 + (Self.same($1.name, name) ? 1 : 0) } }

    public var description: String { fields.map { "\($0.name): \($0.value)" }.joined(separator: "\n") }

    static func same(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        for (p, q) in zip(x, y) where asciiLower(p) != asciiLower(q) { return false }
        return true
    }
}

@inline(__always) func asciiLower(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    func trimmingOWS() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars = scalars.dropLast() }
        return String(scalars)
    }
}

/// HTTP methods: every method libevent knows, and any other token.
public struct HTTPMethod: RawRepresentable, Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    public static let get: HTTPMethod = "GET"
    public static let post: HTTPMethod = "POST"
    public static let head: HTTPMethod = "HEAD"
    public static let put: HTTPMethod = "PUT"
    public static let delete: HTTPMethod = "DELETE"
    public static let options: HTTPMethod = "OPTIONS"
    public static let trace: HTTPMethod = "TRACE"
    public static let connect: HTTPMethod = "CONNECT"
    public static let patch: HTTPMethod = "PATCH"
    public static let propfind: HTTPMethod = "PROPFIND"
    public static let proppatch: HTTPMethod = "PROPPATCH"
    public static let mkcol: HTTPMethod = "MKCOL"
    public static let lock: HTTPMethod = "LOCK"
    public static let unlock: HTTPMethod = "UNLOCK"
    public static let copy: HTTPMethod = "COPY"
    public static let move: HTTPMethod = "MOVE"

    /// The methods libevent 2.1 knows (`EVHTTP_REQ_*`).
    public static let libeventMethods: [HTTPMethod] = [
        .get, .post, .head, .put, .delete, .options, .trace, .connect, .patch, .propfind, .proppatch, .mkcol,
        .lock, .unlock, .copy, .move,
    ]
}

/// Status codes with their reason phrases.
public struct HTTPStatus: Sendable, Hashable, CustomStringConvertible {
    public let code: Int
    public let reason: String
    public init(_ code: Int, _ reason: String? = nil) {
        self.code = code
        self.reason = reason ?? Self.reasons[code] ?? "Status \(code)"
    }
    public var description: String { "\(code) \(reason)" }

    public static let `continue` = HTTPStatus(100)
    public static let ok = HTTPStatus(200)
    public static let noContent = HTTPStatus(204)
    public static let partialContent = HTTPStatus(206)
    public static let movedPermanently = HTTPStatus(301)
    public static let notModified = HTTPStatus(304)
    public static let badRequest = HTTPStatus(400)
    public static let forbidden = HTTPStatus(403)
    public static let notFound = HTTPStatus(404)
    public static let methodNotAllowed = HTTPStatus(405)
    public static let requestTimeout = HTTPStatus(408)
    public static let payloadTooLarge = HTTPStatus(413)
    public static let uriTooLong = HTTPStatus(414)
    public static let rangeNotSatisfiable = HTTPStatus(416)
    public static let expectationFailed = HTTPStatus(417)
    public static let headersTooLarge = HTTPStatus(431)
    public static let internalServerError = HTTPStatus(500)
    public static let notImplemented = HTTPStatus(501)
    public static let serviceUnavailable = HTTPStatus(503)
    public static let versionNotSupported = HTTPStatus(505)

    static let reasons: [Int: String] = [
        100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
        301: "Moved Permanently", 302: "Found", 304: "Not Modified", 307: "Temporary Redirect",
        400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        408: "Request Timeout", 411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
        416: "Range Not Satisfiable", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
        500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
        504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    ]
}

public struct HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    public let major: Int
    public let minor: Int
    public static let http10 = HTTPVersion(major: 1, minor: 0)
    public static let http11 = HTTPVersion(major: 1, minor: 1)
    public var description: String { "HTTP/\(major).\(minor)" }
}
