import EventBackends
import Testing
import EventTestSupport

@Suite("Backend choice: libevent's order, configuration, environment and features")
struct BackendSelectionTests {
    @Test("libevent's order of preference: epoll, poll, select")
    func order() {
        #expect(BackendKind.allCases == [.epoll, .poll, .select])
    }

    @Test("with nothing avoided or disabled, epoll is chosen")
    func defaultIsEpoll() throws {
        #expect(try BackendKind.choose(environment: [:]) == .epoll)
        #expect(try BackendKind.choose(environment: nil) == .epoll)
        #expect(try BackendKind.choose(environment: ["PATH": "/bin", "EVENT_LOCKING": "rcu"]) == .epoll)
    }

    @Test("each kind names the variable that disables it")
    func disablingVariables() {
        #expect(BackendKind.epoll.disablingVariable == "EVENT_NOEPOLL")
        #expect(BackendKind.poll.disablingVariable == "EVENT_NOPOLL")
        #expect(BackendKind.select.disablingVariable == "EVENT_NOSELECT")
        #expect(BackendKind.allCases.map(\.description) == ["epoll", "poll", "select"])
    }

    @Test("EVENT_NO* disables a method, even when set to an empty string (as in libevent)", arguments: ["1", "", "0", "yes"])
    func environmentDisables(_ value: String) throws {
        #expect(try BackendKind.choose(environment: ["EVENT_NOEPOLL": value]) == .poll)
        #expect(try BackendKind.choose(environment: ["EVENT_NOEPOLL": value, "EVENT_NOPOLL": value]) == .select)
        #expect(try BackendKind.choose(environment: ["EVENT_NOPOLL": value]) == .epoll)
        #expect(try BackendKind.choose(environment: ["EVENT_NOSELECT": value]) == .epoll)
        #expect(try BackendKind.choose(environment: ["EVENT_NOEPOLL": value, "EVENT_NOSELECT": value]) == .poll)
    }

    @Test("a nil environment (told to ignore it) disables nothing")
    func ignoredEnvironment() throws {
        #expect(try BackendKind.choose(avoiding: [.epoll], environment: nil) == .poll)
        #expect(try BackendKind.choose(requiring: .arbitraryFileDescriptors, environment: nil) == .poll)
    }

    @Test("the variable names are case-sensitive, as environment variables are")
    func variableNamesExact() throws {
        #expect(try BackendKind.choose(environment: ["event_noepoll": "1", "EVENT_NO_EPOLL": "1"]) == .epoll)
    }

    @Test("every method disabled: an error that gives each method's reason")
    func everythingDisabled() {
        let environment = ["EVENT_NOEPOLL": "1", "EVENT_NOPOLL": "1", "EVENT_NOSELECT": "1"]
        let error = #expect(throws: BackendSelectionError.self) {
            try BackendKind.choose(environment: environment)
        }
        #expect(error?.reasons.count == 3)
        #expect(error?.reasons.first?.contains("EVENT_NOEPOLL") == true)
        #expect(error?.description.contains("EVENT_NOSELECT") == true)
    }

    @Test("the configuration avoids methods", arguments: BackendKind.allCases)
    func avoiding(_ only: BackendKind) throws {
        let others = Set(BackendKind.allCases).subtracting([only])
        #expect(try BackendKind.choose(avoiding: others, environment: [:]) == only)
        let error = #expect(throws: BackendSelectionError.self) {
            try BackendKind.choose(avoiding: Set(BackendKind.allCases), environment: [:])
        }
        #expect(error?.reasons.allSatisfy { $0.contains("avoided by configuration") } == true)
    }

    @Test("avoidance and the environment combine")
    func avoidingAndEnvironment() throws {
        #expect(try BackendKind.choose(avoiding: [.epoll], environment: ["EVENT_NOPOLL": "1"]) == .select)
        #expect(throws: BackendSelectionError.self) {
            try BackendKind.choose(avoiding: [.select], environment: ["EVENT_NOEPOLL": "1", "EVENT_NOPOLL": "1"])
        }
    }

    @Test("required features filter the methods")
    func requiredFeatures() throws {
        #expect(try BackendKind.choose(requiring: .edgeTriggered, environment: [:]) == .epoll)
        #expect(try BackendKind.choose(requiring: .constantTime, environment: [:]) == .epoll)
        #expect(try BackendKind.choose(requiring: .earlyClose, environment: [:]) == .epoll)
        #expect(try BackendKind.choose(requiring: .arbitraryFileDescriptors, environment: [:]) == .poll)
        #expect(try BackendKind.choose(requiring: [.arbitraryFileDescriptors, .earlyClose], environment: [:]) == .poll)
        #expect(try BackendKind.choose(requiring: .arbitraryFileDescriptors, environment: ["EVENT_NOPOLL": "1"]) == .select)
        #expect(try BackendKind.choose(avoiding: [.epoll], requiring: .earlyClose, environment: [:]) == .poll)

        let noEarlyClose = #expect(throws: BackendSelectionError.self) {
            try BackendKind.choose(avoiding: [.epoll, .poll], requiring: .earlyClose, environment: [:])
        }
        #expect(noEarlyClose?.reasons.last?.contains("select lacks") == true)
        #expect(throws: BackendSelectionError.self) {
            try BackendKind.choose(requiring: .edgeTriggered, environment: ["EVENT_NOEPOLL": ""])
        }
        #expect(throws: BackendSelectionError.self) {
            try BackendKind.choose(requiring: [.edgeTriggered, .arbitraryFileDescriptors], environment: [:])
        }
    }

    @Test("feature sets follow libevent's methods")
    func featureSets() {
        #expect(BackendKind.epoll.features == [.edgeTriggered, .constantTime, .earlyClose])
        #expect(BackendKind.poll.features == [.arbitraryFileDescriptors, .earlyClose])
        #expect(BackendKind.select.features == [.arbitraryFileDescriptors])
        #expect(BackendFeatures().description == "none")
        #expect(BackendKind.epoll.features.description == "edge-triggered, O(1), early close")
    }

    @Test("the chosen method can be made and is what was chosen", arguments: BackendKind.allCases)
    func chosenCanBeMade(_ kind: BackendKind) throws {
        let others = Set(BackendKind.allCases).subtracting([kind])
        let chosen = try BackendKind.choose(avoiding: others, environment: [:])
        let backend = try chosen.make()
        defer { backend.close() }
        #expect(backend.kind == kind)
    }
}
