import Glibc

/// The built-in providers by name, and selection from the environment.
public enum LockProviders {
    /// Names `EVENT_LOCKING` accepts.
    public static let names = ["none", "mutex", "rcu", "debug", "debug-rcu"]

    /// The provider a base uses when neither code nor environment names one.
    public static var defaultProvider: any LockProvider { MutexLockProvider() }

    /// The provider called `name`: `none`, `mutex`, `rcu`, `debug` (checks
    /// over mutex) or `debug-rcu` (checks over rcu).
    public static func named(_ name: String, source: String = "code") throws(LockingError) -> any LockProvider {
        switch name.lowercased() {
        case "none": NoLockProvider()
        case "mutex": MutexLockProvider()
        case "rcu": RCULockProvider()
        case "debug": DebugLockProvider(wrapping: MutexLockProvider())
        case "debug-rcu": DebugLockProvider(wrapping: RCULockProvider())
        default: throw .unknownProvider(name: name, source: source)
        }
    }

    /// The provider `EVENT_LOCKING` names in `environment`, or nil when unset
    /// or empty. An unknown name is an error, never a silent default.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessEnvironment.current
    ) throws(LockingError) -> (any LockProvider)? {
        guard let value = environment["EVENT_LOCKING"], !value.isEmpty else { return nil }
        return try named(value, source: "EVENT_LOCKING")
    }
}

/// The process environment as a dictionary (read once per call).
public enum ProcessEnvironment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
