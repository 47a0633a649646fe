/// Errors choosing a lock provider.
public enum LockingError: Error, Hashable, CustomStringConvertible {
    /// `EVENT_LOCKING` (or a name given in code) names no provider.
    case unknownProvider(name: String, source: String)

    public var description: String {
        switch self {
        case .unknownProvider(let name, let source):
            "unknown lock provider '\(name)' in \(source); expected one of \(LockProviders.names.joined(separator: ", "))"
        }
    }
}
