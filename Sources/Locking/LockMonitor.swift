/// The bookkeeping behind ``DebugLockProvider``: who holds which lock, and
/// which lock orders have been seen. Slow by design (one global mutex); it is
/// for finding bugs, not for production.
final class LockMonitor: @unchecked Sendable {
    // Every stored property except `onViolation` is guarded by `mutex`.
    private let mutex = PthreadMutexLock()
    private let onViolation: @Sendable (LockViolation) -> Void

    private struct Held {
        let lock: ObjectIdentifier
        let site: CallSite
    }

    private struct Order: Hashable {
        let first: ObjectIdentifier
        let second: ObjectIdentifier
    }

    /// Locks each thread holds, in the order it took them.
    private var held: [ThreadIdentity: [Held]] = [:]
    /// For each order seen (first held while second taken): the two sites.
    private var orders: [Order: (first: CallSite, second: CallSite)] = [:]

    init(onViolation: @escaping @Sendable (LockViolation) -> Void) {
        self.onViolation = onViolation
    }

    func report(_ violation: LockViolation) {
        onViolation(violation)
    }

    /// Records that the calling thread is about to take `lock` at `site` and
    /// returns the inversions this creates.
    func willAcquire(_ lock: AnyObject, name: String, at site: CallSite) -> [LockViolation] {
        let id = ObjectIdentifier(lock)
        let me = ThreadIdentity.current
        return mutex.withLock {
            var found: [LockViolation] = []
            for other in held[me] ?? [] where other.lock != id {
                if let opposite = orders[Order(first: id, second: other.lock)] {
                    found.append(
                        LockViolation(
                            kind: .lockOrderInversion, site: site, otherSite: opposite.second,
                            message: "lock-order inversion: \(name) taken at \(site) while holding a lock taken at \(other.site); "
                                + "the opposite order was seen when that lock was taken at \(opposite.second) while holding \(name) taken at \(opposite.first)"
                        ))
                }
                let order = Order(first: other.lock, second: id)
                if orders[order] == nil { orders[order] = (other.site, site) }
            }
            return found
        }
    }

    func didAcquire(_ lock: AnyObject, at site: CallSite) {
        let me = ThreadIdentity.current
        mutex.withLock { held[me, default: []].append(Held(lock: ObjectIdentifier(lock), site: site)) }
    }

    func didRelease(_ lock: AnyObject) {
        let id = ObjectIdentifier(lock)
        let me = ThreadIdentity.current
        mutex.withLock {
            guard var list = held[me], let index = list.lastIndex(where: { $0.lock == id }) else { return }
            list.remove(at: index)
            held[me] = list.isEmpty ? nil : list
        }
    }

    /// Forgets a lock that is being destroyed (its identifier may be reused).
    func forget(_ lock: AnyObject) {
        let id = ObjectIdentifier(lock)
        mutex.withLock {
            orders = orders.filter { $0.key.first != id && $0.key.second != id }
        }
    }

    /// Runs `body` under the monitor's mutex (for a lock's own holder state).
    func withState<T>(_ body: () -> T) -> T {
        mutex.withLock(body)
    }
}
