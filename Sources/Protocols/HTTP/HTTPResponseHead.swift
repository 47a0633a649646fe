/// Writes a response's status line and header section as bytes into a
/// reused scratch array: no String building and no copy of the caller's
/// headers (a hello-world reply allocates nothing here once the scratch
/// array has grown).
struct HTTPResponseHead {
    /// What the server adds to the caller's fields.
    struct Additions {
        var date: String?
        var server: String?
        var contentLength: Int?
        var chunked = false
        /// "close", "keep-alive" or nil.
        var connection: StaticString?
    }

    /// Serializes `status`, the valid fields of `headers` (minus those the
    /// additions replace: Transfer-Encoding when chunked, Connection when
    /// one is set), then the additions, ending with the empty line.
    static func write(into bytes: inout [UInt8], status: HTTPStatus, headers: HTTPHeaders, _ additions: Additions) {
        bytes.removeAll(keepingCapacity: true)
        append(&bytes, "HTTP/1.1 ")
        appendDecimal(&bytes, status.code)
        bytes.append(0x20)
        bytes.append(contentsOf: status.reason.utf8)
        append(&bytes, "\r\n")
        for field in headers.fields {
            if additions.chunked && HTTPHeaders.same(field.name, "Transfer-Encoding") { continue }
            if additions.connection != nil && HTTPHeaders.same(field.name, "Connection") { continue }
            // Never a field that could split the response (CR, LF, NUL in a
            // value, a name that is not a token), as evhttp_add_header refuses them.
            guard HTTPHeaders.isValidField(name: field.name, value: field.value) else { continue }
            bytes.append(contentsOf: field.name.utf8)
            append(&bytes, ": ")
            bytes.append(contentsOf: field.value.utf8)
            append(&bytes, "\r\n")
        }
        if let date = additions.date {
            append(&bytes, "Date: ")
            bytes.append(contentsOf: date.utf8)
            append(&bytes, "\r\n")
        }
        if let server = additions.server, HTTPHeaders.isValidField(name: "Server", value: server) {
            append(&bytes, "Server: ")
            bytes.append(contentsOf: server.utf8)
            append(&bytes, "\r\n")
        }
        if additions.chunked {
            append(&bytes, "Transfer-Encoding: chunked\r\n")
        } else if let length = additions.contentLength {
            append(&bytes, "Content-Length: ")
            appendDecimal(&bytes, length)
            append(&bytes, "\r\n")
        }
        if let connection = additions.connection {
            append(&bytes, "Connection: ")
            append(&bytes, connection)
            append(&bytes, "\r\n")
        }
        append(&bytes, "\r\n")
    }

    @inline(__always)
    static func append(_ bytes: inout [UInt8], _ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// The decimal digits of a non-negative `value`.
    static func appendDecimal(_ bytes: inout [UInt8], _ value: Int) {
        guard value > 0 else {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 20 digits, no heap
        var count = 0
        var rest = UInt64(value)
        withUnsafeMutableBytes(of: &digits) { scratch in
            while rest > 0 {
                scratch[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            }
            for index in stride(from: count - 1, through: 0, by: -1) { bytes.append(scratch[index]) }
        }
    }
}
