/// How a shared event base guards its read-mostly state (the registrations the
/// loop dispatches from, which events watch an fd, whether an event is pending).
public enum ReadPathStrategy: Sendable, Hashable {
    /// Readers take the base lock, as libevent does.
    case baseLock
    /// Readers take no lock: they read published versions inside read-side
    /// sections of the provider's ``ReadMostlyDomain``; the loop thread is the
    /// only writer, other threads hand it changes, and replaced versions are
    /// reclaimed after a grace period.
    case readCopyUpdate
}

/// Makes the locks and condition variables a shared event base (and every
/// layer above it) uses; libevent's `evthread_set_lock_callbacks` and
/// `evthread_set_condition_callbacks` as one value.
///
/// A provider that only implements ``makeLock(_:)``,
/// ``makeReadWriteLock()`` and ``makeCondition()`` gets plain-lock defaults
/// for everything RCU needs (read-side sections on a read/write lock,
/// reclamation once no reader remains). A provider that wants the RCU paths
/// returns ``ReadPathStrategy/readCopyUpdate`` and its own domain.
public protocol LockProvider: Sendable {
    /// The name `EVENT_LOCKING` selects it by and `EVENT_SHOW_METHOD` prints.
    var name: String { get }
    /// `false` only for the `none` provider: a base using it is an owned base.
    var providesMutualExclusion: Bool { get }
    /// How shared bases guard their read paths with this provider.
    var readPath: ReadPathStrategy { get }

    func makeLock(_ kind: LockKind) -> any EventLock
    func makeReadWriteLock() -> any EventReadWriteLock
    func makeCondition() -> any EventCondition
    /// The read-side sections, grace periods and deferred reclamation that
    /// ``ReadPathStrategy/readCopyUpdate`` bases use.
    func makeReadMostlyDomain() -> any ReadMostlyDomain
}

extension LockProvider {
    public var providesMutualExclusion: Bool { true }
    public var readPath: ReadPathStrategy { .baseLock }

    public func makeReadMostlyDomain() -> any ReadMostlyDomain {
        LockedReadMostlyDomain(lock: makeReadWriteLock(), guardLock: makeLock(.plain))
    }
}
