/// Why no backend could be chosen, method by method.
public struct BackendSelectionError: Error, Hashable, CustomStringConvertible {
    public let reasons: [String]
    public var description: String {
        "no event backend available: " + reasons.joined(separator: "; ")
    }
}

extension BackendKind {
    /// Picks the first method in libevent's order (epoll, poll, select) that is
    /// not avoided by the configuration, not disabled by `EVENT_NOEPOLL`,
    /// `EVENT_NOPOLL` or `EVENT_NOSELECT` (when the environment is honoured),
    /// and has every required feature (libevent's `event_base_new_with_config`).
    public static func choose(
        avoiding avoided: Set<BackendKind> = [],
        requiring required: BackendFeatures = [],
        environment: [String: String]?
    ) throws(BackendSelectionError) -> BackendKind {
        var reasons: [String] = []
        for kind in allCases {
            if avoided.contains(kind) {
                reasons.append("\(kind) avoided by configuration")
            } else if let environment, environment[kind.disablingVariable] != nil {
                reasons.append("\(kind) disabled by \(kind.disablingVariable)")
            } else if !kind.features.isSuperset(of: required) {
                reasons.append("\(kind) lacks \(required.subtracting(kind.features))")
            } else {
                return kind
            }
        }
        throw BackendSelectionError(reasons: reasons)
    }
}
