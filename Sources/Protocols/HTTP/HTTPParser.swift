/// HTTP/1.x message parsing (RFC 9110, 9112), strict where a lenient reading
/// lets two parsers frame the same bytes differently (request smuggling),
/// and exact for valid but unusual messages (chunk extensions, trailers,
/// tabs as whitespace, `Chunked` in any case, bodies on GET and HEAD).

/// Why a message was refused, with the status a server answers.
public struct HTTPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public let status: HTTPStatus
    public let reason: String
    public init(_ status: HTTPStatus, _ reason: String) {
        self.status = status
        self.reason = reason
    }
    public var description: String { "\(status): \(reason)" }
}

/// Limits a server applies while parsing.
public struct HTTPLimits: Sendable, Hashable {
    /// The request line and header section together, CRLFs included (431 over it).
    public var maxHeaderBytes = 16 * 1024
    /// The request target (414 over it).
    public var maxURILength = 8 * 1024
    /// A body, decoded (413 over it).
    public var maxBodyBytes = 16 * 1024 * 1024
    /// Header fields in one message (431 over it).
    public var maxHeaderCount = 100
    public init() {}
}

/// A request line and its header fields.
public struct HTTPRequestHead: Sendable, Hashable {
    public var method: HTTPMethod
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
}

/// How a message's body is delimited.
public enum HTTPBodyFraming: Sendable, Hashable {
    case none
    case length(Int)
    case chunked
    /// Until the connection closes (responses only).
    case untilClose
}

enum HTTPSyntax {
    /// RFC 9110 tchar.
    static let tokenTable: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in UInt8(ascii: "0")...UInt8(ascii: "9") { table[Int(byte)] = true }
        for byte in UInt8(ascii: "a")...UInt8(ascii: "z") { table[Int(byte)] = true }
        for byte in UInt8(ascii: "A")...UInt8(ascii: "Z") { table[Int(byte)] = true }
        for character in "!#$%&'*+-.^_`|~".utf8 { table[Int(character)] = true }
        return table
    }()

    @inline(__always) static func isToken(_ byte: UInt8) -> Bool { tokenTable[Int(byte)] }

    static func isToken(_ bytes: ArraySlice<UInt8>) -> Bool { !bytes.isEmpty && bytes.allSatisfy(isToken) }

    /// Where the header section ends in `bytes` (the index just past the
    /// blank line), nil if it has not ended yet; throws on a bare LF or CR
    /// (CRLF is required) and on a section longer than `limit`.
    static func headerEnd(_ bytes: [UInt8], limit: Int) throws(HTTPParseError) -> Int? {
        var index = 0
        var lineStart = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if byte == 0x0A {
                guard index > 0, bytes[index - 1] == 0x0D else {
                    throw HTTPParseError(.badRequest, "bare LF where CRLF is required")
                }
                if index - 1 == lineStart {
                    // An empty line. Before the request line it is ignored
                    // (RFC 9112 2.2 allows one); after it, the section ends.
                    if lineStart == 0 {
                        lineStart = index + 1
                        index += 1
                        continue
                    }
                    return index + 1
                }
                lineStart = index + 1
            } else if byte == 0x0D {
                if index + 1 < count && bytes[index + 1] != 0x0A {
                    throw HTTPParseError(.badRequest, "bare CR in the header section")
                }
            }
            index += 1
            if index > limit { throw HTTPParseError(.headersTooLarge, "header section over \(limit) bytes") }
        }
        return nil
    }

    /// The lines of a header section (without the final blank line), one
    /// at a time, as ``lines(_:)`` splits them, without an array.
    struct Lines: IteratorProtocol {
        var rest: ArraySlice<UInt8>

        mutating func next() -> ArraySlice<UInt8>? {
            guard !rest.isEmpty else { return nil }
            var index = rest.startIndex
            while index < rest.endIndex {
                if rest[index] == 0x0D, index + 1 < rest.endIndex, rest[index + 1] == 0x0A {
                    let line = rest[rest.startIndex..<index]
                    rest = rest[(index + 2)...]
                    return line
                }
                index += 1
            }
            let line = rest
            rest = rest[rest.endIndex...]
            return line
        }
    }

    /// Splits a header section (without the final blank line) into lines.
    static func lines(_ bytes: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == 0x0D, index + 1 < bytes.endIndex, bytes[index + 1] == 0x0A {
                lines.append(bytes[start..<index])
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        if start < bytes.endIndex { lines.append(bytes[start..<bytes.endIndex]) }
        return lines
    }

    /// Header field lines into `headers`; strict about names, whitespace
    /// before the colon, obsolete folding and control bytes in values.
    static func parseFields(_ lines: some Sequence<ArraySlice<UInt8>>, into headers: inout HTTPHeaders, limits: HTTPLimits) throws(HTTPParseError) {
        for line in lines {
            guard let first = line.first else { continue }
            if first == 0x20 || first == 0x09 {
                throw HTTPParseError(.badRequest, "obsolete line folding")
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                throw HTTPParseError(.badRequest, "header line without a colon")
            }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty else { throw HTTPParseError(.badRequest, "empty header name") }
            guard isToken(name) else {
                throw HTTPParseError(.badRequest, "invalid header name (whitespace before the colon, or a non-token byte)")
            }
            var valueStart = line.index(after: colon)
            var valueEnd = line.endIndex
            while valueStart < valueEnd, line[valueStart] == 0x20 || line[valueStart] == 0x09 { valueStart += 1 }
            while valueEnd > valueStart, line[valueEnd - 1] == 0x20 || line[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            let value = line[valueStart..<valueEnd]
            for byte in value where byte == 0 || byte == 0x0D || byte == 0x0A || (byte < 0x20 && byte != 0x09) || byte == 0x7F {
                throw HTTPParseError(.badRequest, "control byte 0x\(String(byte, radix: 16)) in a header value")
            }
            headers.add(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
            if headers.count > limits.maxHeaderCount {
                throw HTTPParseError(.headersTooLarge, "more than \(limits.maxHeaderCount) header fields")
            }
        }
    }

    /// "HTTP/1.1" → version; 505 for a well-formed other version, 400 for garbage.
    static func version(_ text: ArraySlice<UInt8>) throws(HTTPParseError) -> HTTPVersion {
        let s = text.startIndex
        guard text.count == 8, text[s] == UInt8(ascii: "H"), text[s + 1] == UInt8(ascii: "T"),
            text[s + 2] == UInt8(ascii: "T"), text[s + 3] == UInt8(ascii: "P"), text[s + 4] == UInt8(ascii: "/"),
            text[s + 6] == UInt8(ascii: "."), (0x30...0x39).contains(text[s + 5]), (0x30...0x39).contains(text[s + 7])
        else { throw HTTPParseError(.badRequest, "malformed HTTP version") }
        let version = HTTPVersion(major: Int(text[s + 5] - 0x30), minor: Int(text[s + 7] - 0x30))
        guard version == .http10 || version == .http11 else {
            throw HTTPParseError(.versionNotSupported, "\(version) is not supported")
        }
        return version
    }

    /// Parses a request head (request line and fields, without the blank line).
    static func requestHead(_ bytes: ArraySlice<UInt8>, limits: HTTPLimits) throws(HTTPParseError) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(8)
        return try requestHead(bytes, limits: limits, headers: &headers)
    }

    /// The same, filling `headers` (empty; its storage is reused).
    static func requestHead(_ bytes: ArraySlice<UInt8>, limits: HTTPLimits, headers: inout HTTPHeaders) throws(HTTPParseError) -> HTTPRequestHead {
        var all = Lines(rest: bytes)
        guard let requestLine = all.next() else { throw HTTPParseError(.badRequest, "empty request") }
        // Exactly two spaces: method SP target SP version.
        let firstSpace = requestLine.firstIndex(of: 0x20)
        let secondSpace = firstSpace.flatMap { requestLine[($0 + 1)...].firstIndex(of: 0x20) }
        guard let firstSpace, let secondSpace, !requestLine[(secondSpace + 1)...].contains(0x20) else {
            if requestLine.count > limits.maxURILength { throw HTTPParseError(.uriTooLong, "request line over the URI limit") }
            throw HTTPParseError(.badRequest, "malformed request line")
        }
        let parts = (
            requestLine[requestLine.startIndex..<firstSpace], requestLine[(firstSpace + 1)..<secondSpace],
            requestLine[(secondSpace + 1)...]
        )
        guard isToken(parts.0) else { throw HTTPParseError(.badRequest, "invalid method token") }
        let target = parts.1
        guard target.count <= limits.maxURILength else {
            throw HTTPParseError(.uriTooLong, "request target over \(limits.maxURILength) bytes")
        }
        guard !target.isEmpty, target.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            throw HTTPParseError(.badRequest, "invalid request target")
        }
        let version = try version(parts.2)
        try parseFields(IteratorSequence(all), into: &headers, limits: limits)
        return HTTPRequestHead(
            method: HTTPMethod(rawValue: String(decoding: parts.0, as: UTF8.self)),
            target: String(decoding: target, as: UTF8.self), version: version, headers: headers)
    }

    /// How a request's body is framed (RFC 9112 6.3), refusing every
    /// ambiguous combination.
    static func requestFraming(_ head: HTTPRequestHead, limits: HTTPLimits) throws(HTTPParseError) -> HTTPBodyFraming {
        let headers = head.headers
        let transferEncodings = headers.values("Transfer-Encoding")
        let lengths = headers.values("Content-Length")
        if !transferEncodings.isEmpty {
            guard lengths.isEmpty else {
                throw HTTPParseError(.badRequest, "both Transfer-Encoding and Content-Length")
            }
            guard head.version == .http11 else {
                throw HTTPParseError(.badRequest, "Transfer-Encoding in an HTTP/1.0 request")
            }
            let codings = transferEncodings.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
                .map { $0.trimmingOWS() }
            guard let last = codings.last, HTTPHeaders.same(last, "chunked") else {
                throw HTTPParseError(.badRequest, "Transfer-Encoding whose last coding is not chunked")
            }
            guard codings.count == 1 else {
                throw HTTPParseError(.notImplemented, "transfer codings other than chunked")
            }
            return .chunked
        }
        guard !lengths.isEmpty else { return .none }
        var length: Int?
        for value in lengths {
            for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                let digits = item.trimmingOWS()
                guard let parsed = parseDecimal(digits) else {
                    throw HTTPParseError(.badRequest, "invalid Content-Length \(value.debugDescription)")
                }
                if let length, length != parsed { throw HTTPParseError(.badRequest, "differing Content-Length values") }
                length = parsed
            }
        }
        guard let length else { return .none }
        guard length <= limits.maxBodyBytes else { throw HTTPParseError(.payloadTooLarge, "body of \(length) bytes") }
        return length == 0 ? .none : .length(length)
    }

    /// Digits only, no sign, at most 18 of them.
    static func parseDecimal(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 18, bytes.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return bytes.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }
}

/// Decodes a chunked body incrementally (RFC 9112 7.1): strict chunk sizes
/// (hex digits only: no sign, prefix, spaces or overflow), extensions
/// skipped, CRLF required, trailers parsed like header fields.
struct ChunkedDecoder: Sendable {
    enum State: Sendable { case size, data(Int), dataEnd, trailers, done }
    var state: State = .size
    var decoded = 0
    var trailers = HTTPHeaders()
    private var trailerBytes = 0

    static let maxLine = 4096

    /// Consumes what it can from `bytes` (returns how many), appending
    /// body bytes through `emit`. `isDone` says when the body ended.
    mutating func consume(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits, emit: (UnsafeRawBufferPointer) -> Void) throws(HTTPParseError) -> Int {
        var offset = 0
        while offset < bytes.count {
            switch state {
            case .size:
                guard let (line, used) = try Self.line(bytes, from: offset) else {
                    return offset
                }
                offset += used
                state = try sizeState(line)
            case .data(let remaining):
                let n = min(remaining, bytes.count - offset)
                decoded += n
                guard decoded <= limits.maxBodyBytes else {
                    throw HTTPParseError(.payloadTooLarge, "chunked body over \(limits.maxBodyBytes) bytes")
                }
                emit(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
                offset += n
                state = remaining - n == 0 ? .dataEnd : .data(remaining - n)
            case .dataEnd:
                guard bytes.count - offset >= 2 else {
                    if bytes[offset] != 0x0D { throw HTTPParseError(.badRequest, "chunk data not followed by CRLF") }
                    return offset
                }
                guard bytes[offset] == 0x0D, bytes[offset + 1] == 0x0A else {
                    throw HTTPParseError(.badRequest, "chunk data not followed by CRLF")
                }
                offset += 2
                state = .size
            case .trailers:
                guard let (line, used) = try Self.line(bytes, from: offset) else { return offset }
                offset += used
                trailerBytes += used
                if trailerBytes > limits.maxHeaderBytes {
                    throw HTTPParseError(.headersTooLarge, "trailer section over \(limits.maxHeaderBytes) bytes")
                }
                if line.isEmpty {
                    state = .done
                    return offset
                }
                try HTTPSyntax.parseFields([ArraySlice(line)], into: &trailers, limits: limits)
            case .done:
                return offset
            }
        }
        return offset
    }

    var isDone: Bool { if case .done = state { true } else { false } }

    private mutating func sizeState(_ line: [UInt8]) throws(HTTPParseError) -> State {
        var size = 0
        var index = 0
        while index < line.count, let digit = Self.hexValue(line[index]) {
            guard index < 15 else { throw HTTPParseError(.badRequest, "chunk size overflows") }
            size = size << 4 | digit
            index += 1
        }
        guard index > 0 else { throw HTTPParseError(.badRequest, "invalid chunk size") }
        if index < line.count {
            // Only a chunk extension may follow: ";name[=value]...", OWS allowed before ';'.
            var rest = index
            while rest < line.count, line[rest] == 0x20 || line[rest] == 0x09 { rest += 1 }
            guard rest < line.count, line[rest] == UInt8(ascii: ";") else {
                throw HTTPParseError(.badRequest, "invalid chunk size")
            }
            for byte in line[rest...] where byte < 0x20 && byte != 0x09 || byte == 0x7F {
                throw HTTPParseError(.badRequest, "control byte in a chunk extension")
            }
        }
        return size == 0 ? .trailers : .data(size)
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: Int(byte - 0x30)
        case 0x41...0x46: Int(byte - 0x41 + 10)
        case 0x61...0x66: Int(byte - 0x61 + 10)
        default: nil
        }
    }

    /// A CRLF-terminated line starting at `offset` (without the CRLF) and
    /// the bytes it used; nil when incomplete; throws on bare LF or length.
    static func line(_ bytes: UnsafeRawBufferPointer, from offset: Int) throws(HTTPParseError) -> ([UInt8], Int)? {
        var index = offset
        while index < bytes.count {
            if bytes[index] == 0x0A {
                guard index > offset, bytes[index - 1] == 0x0D else {
                    throw HTTPParseError(.badRequest, "bare LF where CRLF is required")
                }
                return (Array(bytes[offset..<(index - 1)]), index + 1 - offset)
            }
            if bytes[index] == 0x0D, index + 1 < bytes.count, bytes[index + 1] != 0x0A {
                throw HTTPParseError(.badRequest, "bare CR in a chunk line")
            }
            index += 1
            if index - offset > maxLine { throw HTTPParseError(.badRequest, "chunk line over \(maxLine) bytes") }
        }
        return nil
    }
}
