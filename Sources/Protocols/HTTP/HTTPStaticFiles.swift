import EventBuffers
import Glibc

/// Serves the files under a directory (what `event-httpd` runs; usable as
/// any server's generic handler): index.html for directories, content types
/// by extension, Last-Modified / If-Modified-Since, byte ranges (one range
/// as 206 with Content-Range, several as multipart/byteranges), HEAD, an
/// optional access log. Bodies are file segments (sendfile on plain sockets).
/// Paths cannot leave the root ("..", symlinks).
public final class HTTPStaticFiles: Sendable {
    public let root: String
    /// Receives one Common Log Format line per response, if set.
    public let accessLog: (@Sendable (String) -> Void)?
    /// A Range header with more ranges than this is ignored (the whole file
    /// is sent), so a request cannot make the server send a file many times over.
    public let maxRanges: Int

    /// `root` must be an absolute path without symlinks (see `realpath`).
    public init(root: String, accessLog: (@Sendable (String) -> Void)? = nil, maxRanges: Int = 16) {
        self.root = root
        self.accessLog = accessLog
        self.maxRanges = maxRanges
    }

    /// Writes access lines to standard output.
    public static let standardOutputLog: @Sendable (String) -> Void = { line in
        let data = Array(line.utf8)
        _ = data.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }

    static let types: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8", "txt": "text/plain; charset=utf-8",
        "css": "text/css", "js": "text/javascript", "json": "application/json", "png": "image/png",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml", "ico": "image/x-icon",
        "pdf": "application/pdf", "wasm": "application/wasm", "xml": "application/xml",
    ]

    /// Answers `request` from the directory.
    public func serve(_ request: HTTPServerRequest) {
        guard request.method == .get || request.method == .head else {
            reply(request, .methodNotAllowed, HTTPHeaders([("Allow", "GET, HEAD")]), "method not allowed\n")
            return
        }
        let relative = HTTPURI.percentDecode(request.uri.path)
        guard relative.hasPrefix("/"), !relative.utf8.contains(0) else {
            reply(request, .badRequest, HTTPHeaders(), "bad path\n")
            return
        }
        var path = root + relative
        guard let real = realpath(path, nil) else {
            reply(request, .notFound, HTTPHeaders(), "not found\n")
            return
        }
        path = String(cString: real)
        free(real)
        // No escaping the root through "..", symlinks or the like.
        guard path == root || path.hasPrefix(root + "/") else {
            reply(request, .forbidden, HTTPHeaders(), "forbidden\n")
            return
        }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            guard relative.hasSuffix("/") else {
                reply(request, .movedPermanently, HTTPHeaders([("Location", request.uri.path + "/")]), "moved\n")
                return
            }
            path += "/index.html"
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            if fd >= 0 { close(fd) }
            reply(request, .notFound, HTTPHeaders(), "not found\n")
            return
        }
        let size = Int(info.st_size)
        let modified = info.st_mtim.tv_sec
        var headers = HTTPHeaders()
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        let type = Self.types[ext] ?? "application/octet-stream"
        headers.add("Last-Modified", HTTPDate.format(modified))
        headers.add("Accept-Ranges", "bytes")
        if let since = request.headers["If-Modified-Since"], let time = HTTPDate.parse(since), modified <= time {
            close(fd)
            reply(request, .notModified, headers, "")
            return
        }
        // The segment owns the descriptor from here on.
        guard let file = try? FileSegment(fd: fd, offset: 0, length: size, closeOnFree: true) else {
            close(fd)
            reply(request, .internalServerError, HTTPHeaders(), "cannot read\n")
            return
        }
        var ranges: [ClosedRange<Int>]? = nil
        if let header = request.headers["Range"] {
            switch Self.byteRanges(header, size: size, maxRanges: maxRanges) {
            case .ignored:
                break
            case .unsatisfiable:
                headers.add("Content-Range", "bytes */\(size)")
                reply(request, .rangeNotSatisfiable, headers, "")
                return
            case .ranges(let list):
                ranges = list
            }
        }
        let body = EventBuffer()
        let status: HTTPStatus
        do {
            switch ranges {
            case nil:
                status = .ok
                headers.add("Content-Type", type)
                try body.add(file: file)
            case let list? where list.count == 1:
                status = .partialContent
                headers.add("Content-Type", type)
                headers.add("Content-Range", "bytes \(list[0].lowerBound)-\(list[0].upperBound)/\(size)")
                try body.add(file: file, offset: list[0].lowerBound, length: list[0].count)
            case let list?:
                // RFC 9110 14.6: each part with its own Content-Type and Content-Range.
                status = .partialContent
                let boundary = Self.boundary()
                headers.add("Content-Type", "multipart/byteranges; boundary=\(boundary)")
                for range in list {
                    try body.add("\r\n--\(boundary)\r\nContent-Type: \(type)\r\nContent-Range: bytes \(range.lowerBound)-\(range.upperBound)/\(size)\r\n\r\n")
                    try body.add(file: file, offset: range.lowerBound, length: range.count)
                }
                try body.add("\r\n--\(boundary)--\r\n")
            }
        } catch {
            reply(request, .internalServerError, HTTPHeaders(), "cannot read\n")
            return
        }
        let length = body.count
        request.respond(status, headers: headers, buffer: body)
        access(request, status, length)
    }

    /// What a Range header asks for.
    enum RangeRequest: Equatable {
        /// Not a byte-range set we serve (unknown unit, bad syntax, too many
        /// ranges): the whole file, 200, as RFC 9110 allows.
        case ignored
        /// Valid, but no range overlaps the file: 416.
        case unsatisfiable
        /// The satisfiable ranges, in the order asked, clipped to the file.
        case ranges([ClosedRange<Int>])
    }

    /// Parses "bytes=a-b, a-, -n, ..." against a file of `size` bytes.
    static func byteRanges(_ header: String, size: Int, maxRanges: Int) -> RangeRequest {
        guard header.hasPrefix("bytes=") else { return .ignored }
        let specs = header.dropFirst(6).split(separator: ",", omittingEmptySubsequences: false)
        guard specs.count <= maxRanges else { return .ignored }
        var ranges: [ClosedRange<Int>] = []
        for raw in specs {
            let spec = raw.trimmingOWS()
            guard let dash = spec.firstIndex(of: "-") else { return .ignored }
            let first = spec[..<dash], last = spec[spec.index(after: dash)...]
            guard first.allSatisfy(\.isASCIIDigit), last.allSatisfy(\.isASCIIDigit), !(first.isEmpty && last.isEmpty)
            else { return .ignored }
            if first.isEmpty {
                // A suffix: the last n bytes.
                guard let suffix = Int(last) else { return .ignored }
                if suffix > 0 && size > 0 { ranges.append(max(0, size - suffix)...(size - 1)) }
                continue
            }
            guard let start = Int(first) else { return .ignored }
            var end = size - 1
            if !last.isEmpty {
                guard let value = Int(last), value >= start else { return .ignored }
                end = min(value, size - 1)
            }
            if start < size { ranges.append(start...end) }
        }
        return ranges.isEmpty ? .unsatisfiable : .ranges(ranges)
    }

    /// A multipart boundary that cannot occur by chance.
    static func boundary() -> String {
        "SwiftEvent-" + String(UInt64.random(in: 0...UInt64.max), radix: 36) + String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }

    private func reply(_ request: HTTPServerRequest, _ status: HTTPStatus, _ headers: HTTPHeaders, _ body: String) {
        var headers = headers
        if !body.isEmpty && !headers.contains("Content-Type") { headers.add("Content-Type", "text/plain; charset=utf-8") }
        request.respond(status, headers: headers, body: body)
        access(request, status, body.utf8.count)
    }

    private func access(_ request: HTTPServerRequest, _ status: HTTPStatus, _ bytes: Int) {
        guard let accessLog else { return }
        accessLog(
            "\(request.peer.host ?? "-") - - [\(HTTPDate.format(time(nil)))] \"\(request.method) \(request.target) \(request.version)\" \(status.code) \(bytes)\n"
        )
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
