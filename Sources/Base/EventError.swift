import EventBackends
import EventLocking

/// Why an event-base operation failed. Each case names the descriptor,
/// signal, value or call involved.
public enum EventError: Error, Hashable, CustomStringConvertible {
    /// The descriptor is negative or not open.
    case badFileDescriptor(fd: Int32, call: String)
    /// The backend cannot watch this descriptor (a regular file under epoll).
    case unsupportedFileDescriptor(fd: Int32, backend: BackendKind, reason: String)
    /// The backend lacks a feature the event asks for.
    case unsupportedByBackend(feature: BackendFeatures, backend: BackendKind, fd: Int32)
    /// Events on one descriptor must all be edge-triggered or none.
    case mixedEdgeTriggering(fd: Int32)
    /// More than 65535 events read, write or wait for close on one
    /// descriptor (libevent's limit too).
    case tooManyEvents(fd: Int32)
    /// The flags do not make a valid event.
    case invalidFlags(Event.Flags, fd: Int32, reason: String)
    /// A timeout that is negative or too large to schedule.
    case invalidTimeout(Duration)
    /// A signal number outside 1..<NSIG, or one that cannot be caught.
    case invalidSignal(Int32, reason: String)
    /// Another base receives signals; only one base can at a time.
    case signalsOwnedByAnotherBase(signal: Int32)
    /// A priority outside 0..<priorityCount.
    case invalidPriority(Int, count: Int)
    /// The operation is not allowed while the event is active.
    case eventActive(call: String)
    /// The event's finalizer has been scheduled or has run.
    case eventFinalized(call: String)
    /// The base was shut down.
    case baseShutDown(call: String)
    /// The loop is already running (in this or another thread).
    case loopAlreadyRunning
    /// The operation needs the loop to be stopped.
    case loopRunning(call: String)
    /// The event belongs to a different base.
    case wrongBase(call: String)
    /// No backend could be chosen.
    case noBackend(BackendSelectionError)
    /// The lock provider named in configuration or environment is unknown.
    case locking(LockingError)
    /// A system call failed.
    case system(SystemCallError)
    /// The configuration is invalid.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .badFileDescriptor(let fd, let call): "\(call): bad file descriptor \(fd)"
        case .unsupportedFileDescriptor(let fd, let backend, let reason):
            "\(backend) cannot watch fd \(fd): \(reason)"
        case .unsupportedByBackend(let feature, let backend, let fd):
            "\(backend) does not support \(feature) (fd \(fd))"
        case .mixedEdgeTriggering(let fd):
            "fd \(fd) mixes edge-triggered and level-triggered events"
        case .tooManyEvents(let fd): "fd \(fd) already has 65535 events for the same condition"
        case .invalidFlags(let flags, let fd, let reason): "invalid flags [\(flags)] for fd \(fd): \(reason)"
        case .invalidTimeout(let timeout): "invalid timeout \(timeout): must be between 0 and \(EventBase.maximumTimeout)"
        case .invalidSignal(let signal, let reason): "invalid signal \(signal): \(reason)"
        case .signalsOwnedByAnotherBase(let signal):
            "signal \(signal): another event base receives signals; only one base can at a time"
        case .invalidPriority(let priority, let count): "priority \(priority) is outside 0..<\(count)"
        case .eventActive(let call): "\(call): the event is active"
        case .eventFinalized(let call): "\(call): the event has been finalized"
        case .baseShutDown(let call): "\(call): the event base has been shut down"
        case .loopAlreadyRunning: "the event loop is already running"
        case .loopRunning(let call): "\(call): not allowed while the event loop runs"
        case .wrongBase(let call): "\(call): the event belongs to another base"
        case .noBackend(let error): error.description
        case .locking(let error): error.description
        case .system(let error): error.description
        case .invalidConfiguration(let reason): "invalid configuration: \(reason)"
        }
    }
}
