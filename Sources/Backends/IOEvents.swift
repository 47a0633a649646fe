import CEventShims

/// Readiness a backend watches for and reports. The raw values are libevent's
/// `EV_READ`, `EV_WRITE` and `EV_CLOSED`.
public struct IOEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let read = IOEvents(rawValue: SE_READY_READ)
    public static let write = IOEvents(rawValue: SE_READY_WRITE)
    /// The peer closed its side (EPOLLRDHUP / POLLRDHUP).
    public static let closed = IOEvents(rawValue: SE_READY_CLOSED)
}

/// What a backend can do (libevent's `event_method_feature`).
public struct BackendFeatures: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Edge-triggered notification (`EV_FEATURE_ET`).
    public static let edgeTriggered = BackendFeatures(rawValue: 0x01)
    /// Adding, deleting and dispatching one event is O(1) (`EV_FEATURE_O1`).
    public static let constantTime = BackendFeatures(rawValue: 0x02)
    /// Any file descriptor, not only sockets and pipes (`EV_FEATURE_FDS`).
    public static let arbitraryFileDescriptors = BackendFeatures(rawValue: 0x04)
    /// Detects the peer closing without reading first (`EV_FEATURE_EARLY_CLOSE`).
    public static let earlyClose = BackendFeatures(rawValue: 0x08)

    public var description: String {
        var names: [String] = []
        if contains(.edgeTriggered) { names.append("edge-triggered") }
        if contains(.constantTime) { names.append("O(1)") }
        if contains(.arbitraryFileDescriptors) { names.append("arbitrary fds") }
        if contains(.earlyClose) { names.append("early close") }
        return names.isEmpty ? "none" : names.joined(separator: ", ")
    }
}

/// One ready file descriptor, as a backend reports it after a wait.
public typealias ReadyDescriptor = se_ready

extension ReadyDescriptor {
    @inlinable public var events: IOEvents { IOEvents(rawValue: what) }
}
