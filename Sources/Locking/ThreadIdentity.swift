import CEventShims

/// A process-unique id of a thread, cheap to read (one thread-local load).
/// Used by owned bases to catch calls from foreign threads and by the debug
/// lock provider to know who holds a lock.
public struct ThreadIdentity: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The calling thread.
    @inline(__always)
    public static var current: ThreadIdentity { ThreadIdentity(rawValue: se_thread_id()) }

    /// The calling thread's name (pthread_getname_np), or "unnamed".
    public static var currentName: String {
        var buffer = [CChar](repeating: 0, count: 64)
        let name: String? = buffer.withUnsafeMutableBufferPointer { raw in
            guard let base = raw.baseAddress, se_thread_name(base, raw.count) == 0 else { return nil }
            return String(cString: base)
        }
        if let name, !name.isEmpty { return name }
        return "unnamed"
    }

    /// "thread 7 'worker'" for the calling thread.
    public static var currentDescription: String {
        "thread \(current.rawValue) '\(currentName)'"
    }

    public var description: String { "thread \(rawValue)" }
}
