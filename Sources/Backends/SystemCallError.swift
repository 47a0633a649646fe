import Glibc

/// A system call failed: which call, with which errno, on which descriptor.
public struct SystemCallError: Error, Hashable, CustomStringConvertible {
    public let call: String
    public let errno: Int32
    public let fd: Int32?

    public init(call: String, errno: Int32, fd: Int32? = nil) {
        self.call = call
        self.errno = errno
        self.fd = fd
    }

    /// Captures the calling thread's current errno.
    public static func last(_ call: String, fd: Int32? = nil) -> SystemCallError {
        SystemCallError(call: call, errno: Glibc.errno, fd: fd)
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        if let fd { return "\(call) on fd \(fd) failed: \(reason) (errno \(errno))" }
        return "\(call) failed: \(reason) (errno \(errno))"
    }
}
