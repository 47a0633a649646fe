import CURCUShim

/// liburcu's memb flavour as a ``ReadMostlyDomain``. Read-side sections are
/// two calls into liburcu (a thread-local counter and a compiler barrier; the
/// grace-period side issues the membarrier), so any thread can be a reader
/// without announcing quiescent states. Threads register on their first
/// section and unregister when they exit. Reclamation runs on liburcu's
/// `call_rcu` thread.
public final class URCUDomain: ReadMostlyDomain {
    /// liburcu keeps one memb domain per process; so do we.
    public static let shared = URCUDomain()

    private init() {}

    @inline(__always)
    public func enterReadSection() { se_rcu_read_lock() }

    @inline(__always)
    public func exitReadSection() { se_rcu_read_unlock() }

    public func synchronize() {
        precondition(se_rcu_read_ongoing() == 0, "RCU synchronize called inside a read-side section")
        se_rcu_synchronize()
    }

    public func retire(_ object: AnyObject) {
        let context = Unmanaged.passRetained(object).toOpaque()
        se_rcu_retire(context) { context in
            Unmanaged<AnyObject>.fromOpaque(context!).release()
        }
    }

    public func barrier() { se_rcu_barrier() }
    public func registerCurrentThread() { se_rcu_register_thread() }
    public func unregisterCurrentThread() { se_rcu_unregister_thread() }

    /// Whether the calling thread is inside a read-side section.
    public var isInReadSection: Bool { se_rcu_read_ongoing() != 0 }

    /// How many retired objects liburcu has reclaimed in this process.
    public var reclaimedCount: UInt { UInt(se_rcu_reclaimed_count()) }
}
