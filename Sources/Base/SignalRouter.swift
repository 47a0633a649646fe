import CEventShims
import EventLocking
import Glibc

/// The process-wide side of signal delivery (libevent's `evsig_base`): one
/// base at a time receives signals. The C handler writes each caught signal's
/// number into that base's pipe; the base's loop reads it and runs the events.
final class SignalRouter: @unchecked Sendable {
    // `owner` and `installed` are guarded by `lock`.
    static let shared = SignalRouter()

    private let lock = PthreadMutexLock()
    private var owner: ObjectIdentifier?
    private var installed = Set<Int32>()

    static func validate(signal: Int32) throws(EventError) {
        guard signal > 0 && signal < se_signal_count() else {
            throw .invalidSignal(signal, reason: "signal numbers are 1..<\(se_signal_count())")
        }
        guard signal != SIGKILL && signal != SIGSTOP else {
            throw .invalidSignal(signal, reason: "SIGKILL and SIGSTOP cannot be caught")
        }
    }

    /// Starts delivering `signal` to `base`'s pipe. Fails if another base
    /// receives signals.
    func install(_ signal: Int32, for base: EventBase, writeFD: Int32) throws(EventError) {
        let id = ObjectIdentifier(base)
        try lock.withLock { () throws(EventError) in
            if let owner, owner != id { throw .signalsOwnedByAnotherBase(signal: signal) }
            if owner == nil {
                owner = id
                se_signal_set_write_fd(writeFD)
            }
            if se_signal_install(signal) < 0 {
                let error = errno
                if installed.isEmpty {
                    owner = nil
                    se_signal_set_write_fd(-1)
                }
                throw .invalidSignal(signal, reason: "sigaction failed: \(String(cString: strerror(error)))")
            }
            installed.insert(signal)
        }
    }

    /// Stops delivering `signal`, restoring the previous action; the base
    /// stops receiving signals when it has none left.
    func uninstall(_ signal: Int32, for base: EventBase) {
        let id = ObjectIdentifier(base)
        lock.withLock {
            guard owner == id, installed.remove(signal) != nil else { return }
            _ = se_signal_restore(signal)
            if installed.isEmpty {
                owner = nil
                se_signal_set_write_fd(-1)
            }
        }
    }

    /// After fork the child's base gets a new pipe.
    func redirect(for base: EventBase, writeFD: Int32) {
        lock.withLock {
            if owner == ObjectIdentifier(base) { se_signal_set_write_fd(writeFD) }
        }
    }
}
