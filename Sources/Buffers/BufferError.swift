import EventBackends

/// Why an ``EventBuffer`` operation failed.
public enum BufferError: Error, Hashable, CustomStringConvertible {
    /// The end the operation changes is frozen (libevent's `evbuffer_freeze`):
    /// a bufferevent's input cannot be added to, its output not drained, by users.
    case frozen(end: Bool, call: String)
    /// More bytes were asked for than the buffer holds.
    case notEnoughData(requested: Int, available: Int)
    /// A position or range outside the buffer.
    case outOfRange(position: Int, length: Int)
    /// A buffer cannot be moved into itself.
    case sameBuffer(call: String)
    /// No space was reserved, or more was committed than reserved.
    case commitWithoutReserve(requested: Int, reserved: Int)
    /// A system call failed (read, write, sendfile, mmap, fstat).
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .frozen(let end, let call): "\(call): the buffer's \(end ? "end" : "start") is frozen"
        case .notEnoughData(let requested, let available):
            "asked for \(requested) bytes, the buffer holds \(available)"
        case .outOfRange(let position, let length): "position \(position) is outside a buffer of \(length) bytes"
        case .sameBuffer(let call): "\(call): source and destination are the same buffer"
        case .commitWithoutReserve(let requested, let reserved):
            "committed \(requested) bytes with \(reserved) reserved"
        case .system(let error): error.description
        }
    }
}
