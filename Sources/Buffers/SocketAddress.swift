import EventBackends
import Glibc

/// An IPv4, IPv6 or Unix-domain socket address (libevent's `struct
/// sockaddr` arguments, and `evutil_parse_sockaddr_port`).
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    public enum Family: Sendable, Hashable {
        case ipv4
        case ipv6
        case unix
    }

    // The address as the kernel takes it: a sockaddr_storage image.
    let storage: [UInt8]

    public var family: Family {
        switch Int32(rawFamily) {
        case AF_INET: .ipv4
        case AF_INET6: .ipv6
        default: .unix
        }
    }

    var rawFamily: sa_family_t {
        storage.withUnsafeBytes { $0.load(as: sa_family_t.self) }
    }

    /// The size the kernel is told.
    var length: socklen_t {
        switch family {
        case .ipv4: socklen_t(MemoryLayout<sockaddr_in>.size)
        case .ipv6: socklen_t(MemoryLayout<sockaddr_in6>.size)
        case .unix:
            socklen_t(MemoryLayout<sa_family_t>.size + (path.map { $0.utf8.count + 1 } ?? 0))
        }
    }

    /// An IPv4 address from dotted-quad text, e.g. `127.0.0.1`.
    public init(ipv4 text: String, port: UInt16) throws(SystemCallError) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, text, &address.sin_addr) == 1 else {
            throw SystemCallError(call: "inet_pton: not an IPv4 address: \(text)", errno: EINVAL)
        }
        storage = Self.image(of: address)
    }

    /// An IPv6 address from text, e.g. `::1`.
    public init(ipv6 text: String, port: UInt16) throws(SystemCallError) {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        guard inet_pton(AF_INET6, text, &address.sin6_addr) == 1 else {
            throw SystemCallError(call: "inet_pton: not an IPv6 address: \(text)", errno: EINVAL)
        }
        storage = Self.image(of: address)
    }

    /// An IPv4 or IPv6 address from text.
    public init(ip text: String, port: UInt16) throws(SystemCallError) {
        if text.contains(":") {
            try self.init(ipv6: text, port: port)
        } else {
            try self.init(ipv4: text, port: port)
        }
    }

    /// A Unix-domain socket path (at most 107 bytes).
    public init(unixPath path: String) throws(SystemCallError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SystemCallError(call: "unix socket path must be 1..<\(capacity) bytes", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        storage = Self.image(of: address)
    }

    /// An address the kernel filled in (accept, getsockname).
    package init(raw: UnsafeRawPointer, length: Int) {
        storage = Array(UnsafeRawBufferPointer(start: raw, count: min(length, MemoryLayout<sockaddr_storage>.size)))
            + [UInt8](repeating: 0, count: max(0, MemoryLayout<sockaddr_storage>.size - length))
    }

    private static func image<T>(of value: T) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: MemoryLayout<sockaddr_storage>.size)
        withUnsafeBytes(of: value) { raw in bytes.replaceSubrange(0..<raw.count, with: raw) }
        return bytes
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    package func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) rethrows -> T {
        try storage.withUnsafeBytes { raw in
            try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }

    /// The port, for IPv4 and IPv6.
    public var port: UInt16? {
        storage.withUnsafeBytes { raw -> UInt16? in
            switch family {
            case .ipv4: UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
            case .ipv6: UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            case .unix: nil
            }
        }
    }

    /// The path, for Unix-domain addresses.
    public var path: String? {
        guard Int32(rawFamily) == AF_UNIX else { return nil }
        return storage.withUnsafeBytes { raw in
            let offset = MemoryLayout<sa_family_t>.size
            let bytes = raw[offset...].prefix { $0 != 0 }
            return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The IP address as text.
    public var host: String? {
        storage.withUnsafeBytes { raw -> String? in
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch family {
            case .ipv4:
                var address = raw.load(as: sockaddr_in.self).sin_addr
                guard inet_ntop(AF_INET, &address, &text, socklen_t(text.count)) != nil else { return nil }
            case .ipv6:
                var address = raw.load(as: sockaddr_in6.self).sin6_addr
                guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return nil }
            case .unix:
                return nil
            }
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public var description: String {
        switch family {
        case .ipv4: "\(host ?? "?"):\(port ?? 0)"
        case .ipv6: "[\(host ?? "?")]:\(port ?? 0)"
        case .unix: "unix:\(path ?? "")"
        }
    }

    package var domain: Int32 {
        switch family {
        case .ipv4: AF_INET
        case .ipv6: AF_INET6
        case .unix: AF_UNIX
        }
    }

    /// The local address a socket is bound to (getsockname).
    public static func local(of fd: Int32) throws(SystemCallError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        if rc < 0 { throw .last("getsockname", fd: fd) }
        return withUnsafeBytes(of: storage) { SocketAddress(raw: $0.baseAddress!, length: Int(length)) }
    }
}
