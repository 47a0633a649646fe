import EventLocking
import Glibc
import Testing
import EventTestSupport

@Suite("Lock provider selection by name and EVENT_LOCKING")
struct EnvironmentSelectionTests {
    private static let expectedNames: [String: String] = [
        "none": "none",
        "mutex": "mutex",
        "rcu": "rcu",
        "debug": "debug(mutex)",
        "debug-rcu": "debug(rcu)",
    ]

    @Test("the documented names are the ones accepted")
    func namesList() {
        #expect(Set(LockProviders.names) == Set(Self.expectedNames.keys))
        #expect(LockProviders.names.count == Self.expectedNames.count)
    }

    @Test("every name resolves, in code and from EVENT_LOCKING", arguments: LockProviders.names)
    func everyNameResolves(_ name: String) throws {
        let named = try LockProviders.named(name)
        #expect(named.name == Self.expectedNames[name])
        let fromEnvironment = try #require(try LockProviders.fromEnvironment(["EVENT_LOCKING": name]))
        #expect(fromEnvironment.name == Self.expectedNames[name])
        #expect(fromEnvironment.providesMutualExclusion == (name != "none"))
        #expect(fromEnvironment.readPath == (name.hasSuffix("rcu") ? .readCopyUpdate : .baseLock))
    }

    @Test("names are case-insensitive", arguments: ["MUTEX", "Rcu", "None", "DEBUG", "Debug-RCU"])
    func caseInsensitive(_ name: String) throws {
        #expect(try LockProviders.named(name).name == Self.expectedNames[name.lowercased()])
        #expect(try LockProviders.fromEnvironment(["EVENT_LOCKING": name])?.name == Self.expectedNames[name.lowercased()])
    }

    @Test("an unknown name is an error that says where it came from", arguments: ["pthread", "mutexx", " mutex", "debug-", "rcu-qsbr", "0"])
    func unknownNamesThrow(_ name: String) {
        #expect(throws: LockingError.unknownProvider(name: name, source: "EVENT_LOCKING")) {
            _ = try LockProviders.fromEnvironment(["EVENT_LOCKING": name])
        }
        #expect(throws: LockingError.unknownProvider(name: name, source: "code")) {
            _ = try LockProviders.named(name)
        }
        #expect(throws: LockingError.unknownProvider(name: name, source: "config file")) {
            _ = try LockProviders.named(name, source: "config file")
        }
    }

    @Test("the error message names the bad value, its source and the valid names")
    func errorMessage() {
        let message = LockingError.unknownProvider(name: "bogus", source: "EVENT_LOCKING").description
        #expect(message.contains("'bogus'"))
        #expect(message.contains("EVENT_LOCKING"))
        for name in LockProviders.names { #expect(message.contains(name)) }
    }

    @Test("unset or empty EVENT_LOCKING selects nothing")
    func unsetOrEmptyGivesNil() throws {
        #expect(try LockProviders.fromEnvironment([:]) == nil)
        #expect(try LockProviders.fromEnvironment(["EVENT_LOCKING": ""]) == nil)
        #expect(try LockProviders.fromEnvironment(["EVENT_NOEPOLL": "1", "PATH": "/bin"]) == nil)
    }

    @Test("the process environment is read as a dictionary")
    func processEnvironment() throws {
        let environment = ProcessEnvironment.current
        #expect(!environment.isEmpty)
        let path = try #require(getenv("PATH"))
        #expect(environment["PATH"] == String(cString: path))
        for (key, value) in environment.prefix(20) {
            let raw = try #require(getenv(key))
            #expect(String(cString: raw) == value, "\(key)")
        }
        // The default argument is that environment: selection agrees with it.
        if let value = environment["EVENT_LOCKING"], !value.isEmpty,
           let expected = try? LockProviders.named(value, source: "EVENT_LOCKING") {
            #expect(try LockProviders.fromEnvironment()?.name == expected.name)
        } else if environment["EVENT_LOCKING", default: ""].isEmpty {
            #expect(try LockProviders.fromEnvironment() == nil)
        }
    }
}
