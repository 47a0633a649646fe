import CEventShims
import EventBackends
import EventLocking

extension EventBase {
    /// How to build a base (libevent's `event_config`).
    public struct Configuration: Sendable {
        /// Use exactly this method; the environment can still disable it.
        public var method: BackendKind?
        /// Methods not to use (`event_config_avoid_method`).
        public var avoidedMethods: Set<BackendKind> = []
        /// Features the method must have (`event_config_require_features`).
        public var requiredFeatures: BackendFeatures = []
        /// The lock provider. `nil`: the one `EVENT_LOCKING` names, else
        /// ``LockProviders/defaultProvider`` (mutex). `NoLockProvider` makes
        /// an owned base; any other provider a shared base.
        public var lockProvider: (any LockProvider)?
        /// Ignore `EVENT_*` variables (`EVENT_BASE_FLAG_IGNORE_ENV`). A setuid
        /// or setgid program ignores them always.
        public var ignoreEnvironment = false
        /// Timers with timerfd precision under epoll
        /// (`EVENT_BASE_FLAG_PRECISE_TIMER`; also `EVENT_PRECISE_TIMER`).
        public var preciseTimer = false
        /// How other threads wake the loop: eventfd, or a pipe.
        public var notifier: Notifier.Mechanism = .eventfd
        /// Number of priorities (`event_base_priority_init`).
        public var priorityCount = 1
        /// Starvation controls (`event_config_set_max_dispatch_interval`):
        /// after running callbacks for this long, or this many, in one pass,
        /// the loop polls again. Apply from `limitsFromPriority` on.
        public var maxDispatchInterval: Duration?
        public var maxCallbacksPerPass: Int?
        public var limitsFromPriority = 0
        /// The environment to read instead of the process's (for tests and
        /// embedding); `nil` reads the process environment.
        public var environment: [String: String]?

        public init() {}

        public init(method: BackendKind?, lockProvider: (any LockProvider)? = nil) {
            self.method = method
            self.lockProvider = lockProvider
        }
    }

    /// Threading mode of a base (DESIGN.md: the two threading modes).
    public enum ThreadingMode: Sendable, Hashable, CustomStringConvertible {
        /// One thread owns the base; no lock is taken on any path.
        case owned
        /// Any thread may use the base; the lock provider guards it.
        case shared

        public var description: String { self == .owned ? "owned" : "shared" }
    }

    /// Options for ``EventBase/loop(_:)`` (libevent's `EVLOOP_*`).
    public struct LoopOptions: OptionSet, Sendable, Hashable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Block until something is active, run it, return (`EVLOOP_ONCE`).
        public static let once = LoopOptions(rawValue: 1)
        /// Do not block: run what is ready now, return (`EVLOOP_NONBLOCK`).
        public static let nonBlocking = LoopOptions(rawValue: 2)
        /// Keep running with no events added (`EVLOOP_NO_EXIT_ON_EMPTY`).
        public static let noExitOnEmpty = LoopOptions(rawValue: 4)
    }

    /// How ``EventBase/loop(_:)`` ended.
    public enum LoopExit: Sendable, Hashable {
        /// Exit or break was requested, or `.once`/`.nonBlocking` finished.
        case finished
        /// No events were left to wait for.
        case noEvents
    }

    /// Longest timeout accepted: 100 years.
    public static let maximumTimeout = Duration.seconds(100 * 365 * 24 * 3600)
}

/// What settings the environment and configuration resolve to.
struct ResolvedConfiguration {
    let backend: BackendKind
    let provider: any LockProvider
    let preciseTimer: Bool
    let showMethod: Bool

    init(_ configuration: EventBase.Configuration) throws(EventError) {
        let honoured = !configuration.ignoreEnvironment && se_issetugid() == 0
        let environment: [String: String]? =
            honoured ? (configuration.environment ?? ProcessEnvironment.current) : nil
        var avoided = configuration.avoidedMethods
        if let method = configuration.method {
            avoided.formUnion(BackendKind.allCases.filter { $0 != method })
        }
        do {
            backend = try BackendKind.choose(
                avoiding: avoided, requiring: configuration.requiredFeatures, environment: environment)
        } catch {
            throw .noBackend(error)
        }
        if let provider = configuration.lockProvider {
            self.provider = provider
        } else {
            do {
                self.provider = try LockProviders.fromEnvironment(environment ?? [:]) ?? LockProviders.defaultProvider
            } catch {
                throw .locking(error)
            }
        }
        preciseTimer = configuration.preciseTimer || environment?["EVENT_PRECISE_TIMER"] != nil
        showMethod = environment?["EVENT_SHOW_METHOD"] != nil
        guard configuration.priorityCount >= 1, configuration.priorityCount <= 256 else {
            throw .invalidConfiguration("priorityCount must be in 1...256, got \(configuration.priorityCount)")
        }
        if let interval = configuration.maxDispatchInterval, interval < .zero {
            throw .invalidConfiguration("maxDispatchInterval must not be negative")
        }
        if let callbacks = configuration.maxCallbacksPerPass, callbacks < 1 {
            throw .invalidConfiguration("maxCallbacksPerPass must be at least 1")
        }
    }
}
