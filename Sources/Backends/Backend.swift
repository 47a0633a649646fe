/// An I/O multiplexing method (libevent's `struct eventop`): epoll, poll or
/// select on Linux; kqueue belongs here when macOS is added. Nothing above
/// this layer assumes a particular method.
///
/// A backend takes no lock of its own. ``update(fd:from:to:edgeTriggered:)``
/// and ``prepareWait()`` need the base's writer access; ``wait(timeoutNanoseconds:)``
/// touches only what `prepareWait` set up, so a shared base may run it
/// without its lock while other threads update registrations (libevent
/// copies poll's array for the same reason).
public protocol Backend: AnyObject {
    var kind: BackendKind { get }
    var features: BackendFeatures { get }

    /// Changes what `fd` is watched for, from `old` to `new` (libevent's
    /// `add`/`del` pair): empty `old` adds, empty `new` removes.
    func update(fd: Int32, from old: IOEvents, to new: IOEvents, edgeTriggered: Bool) throws(SystemCallError)

    /// Snapshots the registrations for the next wait.
    func prepareWait()

    /// Waits until a watched descriptor is ready or `timeoutNanoseconds`
    /// passes (negative: no limit) and returns the ready descriptors. The
    /// buffer is the backend's own and is valid until the next call.
    /// An interrupted wait returns an empty buffer.
    func wait(timeoutNanoseconds: Int64) throws(SystemCallError) -> UnsafeBufferPointer<ReadyDescriptor>

    /// After fork: drops every registration and any kernel object the parent
    /// shares, so the caller can register its descriptors again.
    func reinitialize() throws(SystemCallError)

    /// Releases the kernel object and buffers. The backend is unusable after.
    func close()
}

/// The methods this platform offers, in libevent's order of preference.
public enum BackendKind: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case epoll
    case poll
    case select

    public var features: BackendFeatures {
        switch self {
        case .epoll: [.edgeTriggered, .constantTime, .earlyClose]
        case .poll: [.arbitraryFileDescriptors, .earlyClose]
        case .select: [.arbitraryFileDescriptors]
        }
    }

    /// The environment variable that disables it (`EVENT_NOEPOLL`, ...).
    public var disablingVariable: String { "EVENT_NO\(rawValue.uppercased())" }

    public var description: String { rawValue }

    /// Makes a backend of this kind. `preciseTimer` asks epoll for timerfd
    /// precision (libevent's `EVENT_BASE_FLAG_PRECISE_TIMER`).
    public func make(preciseTimer: Bool = false) throws(SystemCallError) -> any Backend {
        switch self {
        case .epoll: try EpollBackend(preciseTimer: preciseTimer)
        case .poll: PollBackend()
        case .select: SelectBackend()
        }
    }
}
