import EventBackends

extension Event {
    /// What an event waits for and what it reports (libevent's `EV_*`; the
    /// raw values are libevent's).
    public struct Flags: OptionSet, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt32
        @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// The timeout passed (`EV_TIMEOUT`); reported, never asked for.
        public static let timeout = Flags(rawValue: 0x01)
        /// The descriptor is readable (`EV_READ`).
        public static let read = Flags(rawValue: 0x02)
        /// The descriptor is writable (`EV_WRITE`).
        public static let write = Flags(rawValue: 0x04)
        /// A signal arrived; the event's number is a signal (`EV_SIGNAL`).
        public static let signal = Flags(rawValue: 0x08)
        /// Stays added after it fires (`EV_PERSIST`).
        public static let persist = Flags(rawValue: 0x10)
        /// Edge-triggered, where the backend has it (`EV_ET`).
        public static let edgeTriggered = Flags(rawValue: 0x20)
        /// A delete from another thread does not wait for a running callback
        /// (`EV_FINALIZE`): for events whose owner tears them down with
        /// ``Event/finalize(_:)``, or whose callback takes a lock the deleter
        /// may hold (bufferevents, listeners).
        public static let finalize = Flags(rawValue: 0x40)
        /// The peer closed the connection (`EV_CLOSED`), where the backend
        /// detects it early.
        public static let closed = Flags(rawValue: 0x80)

        /// The descriptor conditions.
        public static let io: Flags = [.read, .write, .closed]

        @inlinable var ioEvents: IOEvents { IOEvents(rawValue: rawValue & Flags.io.rawValue) }

        public var description: String {
            var names: [String] = []
            if contains(.timeout) { names.append("Timeout") }
            if contains(.read) { names.append("Read") }
            if contains(.write) { names.append("Write") }
            if contains(.closed) { names.append("EOF") }
            if contains(.signal) { names.append("Signal") }
            if contains(.persist) { names.append("Persist") }
            if contains(.edgeTriggered) { names.append("ET") }
            if contains(.finalize) { names.append("Finalize") }
            return names.joined(separator: " ")
        }
    }
}
