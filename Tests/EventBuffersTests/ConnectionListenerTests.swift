import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

/// One accepted connection as the accept callback saw it.
struct BEAccepted: Sendable {
    let fd: Int32
    let peer: SocketAddress
    let statusFlags: Int32
    let descriptorFlags: Int32
}

@Suite("ConnectionListener: bind, accept, enable/disable, errors, free")
struct ConnectionListenerTests {
    private static func recordingListener(
        base: EventBase, address: SocketAddress, options: ConnectionListener.Options = [.reuseAddress, .closeOnFree],
        into accepted: BEVar<[BEAccepted]>
    ) throws -> ConnectionListener {
        try ConnectionListener(base: base, address: address, options: options) { _, fd, peer in
            accepted.value.append(BEAccepted(fd: fd, peer: peer, statusFlags: fcntl(fd, F_GETFL), descriptorFlags: fcntl(fd, F_GETFD)))
        }
    }

    /// Binds (IPv4 port 0, IPv6 ::1, a Unix path), accepts a connection and
    /// hands over a non-blocking, close-on-exec descriptor and the peer's address.
    @Test(arguments: BEFamily.available)
    func bindsAcceptsAndReportsThePeer(_ family: BEFamily) throws {
        let base = try BEKit.ownedBase()
        let bindAddress = try family.bindAddress()
        defer { if let path = bindAddress.path { unlink(path) } }
        let accepted = BEVar<[BEAccepted]>([])
        let listener = try Self.recordingListener(base: base, address: bindAddress, into: accepted)
        #expect(listener.isAccepting)
        let local = try #require(listener.localAddress)
        #expect(local.family == bindAddress.family)
        switch family {
        case .ipv4:
            #expect(local.host == "127.0.0.1")
            #expect((local.port ?? 0) != 0)
        case .ipv6:
            #expect(local.host == "::1")
            #expect((local.port ?? 0) != 0)
        case .unix:
            #expect(local.path == bindAddress.path)
        }
        let client = try BEKit.connect(to: local)
        defer { close(client) }
        #expect(try BEKit.run(base) { accepted.value.count == 1 })
        let connection = try #require(accepted.value.first)
        #expect(connection.statusFlags & O_NONBLOCK != 0, "accepted descriptor is blocking")
        #expect(connection.descriptorFlags & FD_CLOEXEC != 0, "accepted descriptor is not close-on-exec")
        #expect(connection.peer.family == local.family)
        if family != .unix {
            let clientAddress = try SocketAddress.local(of: client)
            #expect(connection.peer.host == local.host)
            #expect(connection.peer.port == clientAddress.port)
        }
        try BEKit.sendAll(client, "over \(family)")
        #expect(BEKit.receive(connection.fd, count: 9) == Array("over \(family)".utf8))
        close(connection.fd)
        BEKit.finish(base, listeners: [listener])
    }

    /// 100 connections queued at once are all accepted, each with its own
    /// descriptor and the right peer.
    @Test func acceptsManyConnectionsArrivingAtOnce() throws {
        let base = try BEKit.ownedBase()
        let accepted = BEVar<[BEAccepted]>([])
        let listener = try ConnectionListener(
            base: base, address: try BEFamily.ipv4.bindAddress(), backlog: 128
        ) { _, fd, peer in
            accepted.value.append(BEAccepted(fd: fd, peer: peer, statusFlags: fcntl(fd, F_GETFL), descriptorFlags: fcntl(fd, F_GETFD)))
        }
        let address = try #require(listener.localAddress)
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<100 { clients.append(try BEKit.connect(to: address)) }
        #expect(try BEKit.run(base) { accepted.value.count == 100 })
        try BEKit.spin(base, for: .milliseconds(20))
        #expect(accepted.value.count == 100)
        #expect(Set(accepted.value.map(\.fd)).count == 100)
        #expect(accepted.value.allSatisfy { $0.statusFlags & O_NONBLOCK != 0 })
        let clientPorts = Set(try clients.map { try SocketAddress.local(of: $0).port })
        #expect(Set(accepted.value.map(\.peer.port)) == clientPorts)
        for connection in accepted.value { close(connection.fd) }
        BEKit.finish(base, listeners: [listener])
    }

    /// Disabled, the listener leaves connections in the backlog; enabled, it
    /// accepts them. `.disabled` starts it that way.
    @Test func disableStopsAcceptingAndEnableResumes() throws {
        let base = try BEKit.ownedBase()
        let accepted = BEVar<[BEAccepted]>([])
        let listener = try Self.recordingListener(
            base: base, address: try BEFamily.ipv4.bindAddress(), options: [.reuseAddress, .closeOnFree, .disabled],
            into: accepted)
        #expect(!listener.isAccepting)
        let address = try #require(listener.localAddress)
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<3 { clients.append(try BEKit.connect(to: address)) }
        try BEKit.spin(base, for: .milliseconds(80))
        #expect(accepted.value.isEmpty)

        try listener.enable()
        #expect(listener.isAccepting)
        #expect(try BEKit.run(base) { accepted.value.count == 3 })

        try listener.disable()
        #expect(!listener.isAccepting)
        for _ in 0..<5 { clients.append(try BEKit.connect(to: address)) }
        try BEKit.spin(base, for: .milliseconds(80))
        #expect(accepted.value.count == 3)
        try listener.enable()
        #expect(try BEKit.run(base) { accepted.value.count == 8 })
        // Every client was accepted, none was closed.
        for client in clients { #expect(!BEKit.seesEndOfFile(client, within: .milliseconds(5))) }
        for connection in accepted.value { close(connection.fd) }
        BEKit.finish(base, listeners: [listener])
    }

    /// An accept callback that disables the listener stops accepting right
    /// there: the connections still queued wait in the backlog, none is
    /// accepted and dropped (libevent's listener_read_cb returns when the
    /// callback disabled the listener).
    @Test func disablingInsideTheAcceptCallbackLeavesTheRestQueued() throws {
        let base = try BEKit.ownedBase()
        let accepted = BEVar<[Int32]>([])
        let listener = try ConnectionListener(base: base, address: try BEFamily.ipv4.bindAddress()) { listener, fd, _ in
            accepted.value.append(fd)
            try? listener.disable()
        }
        let address = try #require(listener.localAddress)
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<4 { clients.append(try BEKit.connect(to: address)) }
        #expect(try BEKit.run(base) { !accepted.value.isEmpty })
        try BEKit.spin(base, for: .milliseconds(50))
        #expect(accepted.value.count == 1)
        let dropped = clients.filter { BEKit.seesEndOfFile($0, within: .milliseconds(20)) }.count
        #expect(dropped == 0, "\(dropped) queued connection(s) were accepted and closed")
        for _ in 0..<3 {
            let before = accepted.value.count
            try listener.enable()
            _ = try BEKit.run(base, timeout: .milliseconds(300)) { accepted.value.count > before }
        }
        #expect(accepted.value.count == 4)
        for fd in accepted.value { close(fd) }
        BEKit.finish(base, listeners: [listener])
    }

    /// An accept failure reaches the error callback with its errno (here
    /// EINVAL from a listening socket shut down under the listener); the
    /// callback can disable the listener, and then it is quiet.
    @Test func acceptErrorsReachTheErrorCallback() throws {
        let base = try BEKit.ownedBase()
        let accepted = BEVar<[Int32]>([])
        let errors = BEVar<[Int32]>([])
        let listener = try ConnectionListener(base: base, address: try BEFamily.ipv4.bindAddress()) { _, fd, _ in
            accepted.value.append(fd)
        }
        listener.setErrorCallback { listener, error in
            errors.value.append(error)
            try? listener.disable()
        }
        #expect(shutdown(listener.fd, Int32(SHUT_RD)) == 0)
        #expect(try BEKit.run(base) { !errors.value.isEmpty })
        try BEKit.spin(base, for: .milliseconds(80))
        #expect(errors.value == [EINVAL])
        #expect(accepted.value.isEmpty)
        #expect(!listener.isAccepting)
        BEKit.finish(base, listeners: [listener])
    }

    /// With the accept callback removed, a waiting connection must not make
    /// the loop spin on a listening socket that stays readable (libevent
    /// accepts and closes it). Measured as CPU time of this thread, which
    /// runs the loop, over 200 ms.
    @Test func aListenerWithoutAnAcceptCallbackDoesNotSpin() throws {
        let base = try BEKit.ownedBase()
        let accepted = BEVar<[Int32]>([])
        let listener = try ConnectionListener(base: base, address: try BEFamily.ipv4.bindAddress()) { _, fd, _ in
            accepted.value.append(fd)
        }
        listener.setCallback(nil)
        let address = try #require(listener.localAddress)
        let client = try BEKit.connect(to: address)
        defer { close(client) }
        let before = BEKit.threadCPUTime()
        try BEKit.spin(base, for: .milliseconds(200))
        let used = BEKit.threadCPUTime() - before
        #expect(used < .milliseconds(60), "the loop used \(used) of CPU in 200 ms")
        #expect(accepted.value.isEmpty)
        BEKit.finish(base, listeners: [listener])
    }

    /// Free closes the listening socket (close-on-free): its number no
    /// longer refers to it and connecting is refused.
    @Test func freeClosesTheListeningSocket() throws {
        let base = try BEKit.ownedBase()
        let listener = try ConnectionListener(base: base, address: try BEFamily.ipv4.bindAddress()) { _, fd, _ in close(fd) }
        let address = try #require(listener.localAddress)
        let fd = listener.fd
        let identity = BEKit.identity(fd)
        #expect(BEKit.isOpen(fd, as: identity))
        listener.free()
        #expect(try BEKit.run(base, timeout: .seconds(2)) { !BEKit.isOpen(fd, as: identity) })
        #expect(try BEKit.connectError(to: address) == ECONNREFUSED)
        #expect(throws: EventError.self) { try listener.enable() }
        BEKit.finish(base)
    }

    /// A listening socket made elsewhere is adopted: connections are
    /// accepted. Without `.closeOnFree` it stays open and listening after
    /// free; with it, free closes it.
    @Test func adoptsAnExistingListeningSocket() throws {
        let base = try BEKit.ownedBase()
        let fd = try BEKit.listeningSocket(try BEKit.loopback4(port: 0))
        let identity = BEKit.identity(fd)
        let address = try SocketAddress.local(of: fd)
        let accepted = BEVar<[BEAccepted]>([])
        let listener = try ConnectionListener(base: base, fd: fd) { _, fd, peer in
            accepted.value.append(BEAccepted(fd: fd, peer: peer, statusFlags: fcntl(fd, F_GETFL), descriptorFlags: fcntl(fd, F_GETFD)))
        }
        #expect(listener.fd == fd)
        #expect(listener.localAddress == address)
        let first = try BEKit.connect(to: address)
        defer { close(first) }
        #expect(try BEKit.run(base) { accepted.value.count == 1 })
        listener.free()
        try BEKit.spin(base, for: .milliseconds(30))
        #expect(BEKit.isOpen(fd, as: identity), "free closed a socket it was not asked to close")
        let second = try BEKit.connect(to: address)
        defer { close(second) }
        let secondAccepted = accept(fd, nil, nil)
        #expect(secondAccepted >= 0, "the adopted socket no longer listens")
        if secondAccepted >= 0 { close(secondAccepted) }
        #expect(accepted.value.count == 1)

        let owning = try ConnectionListener(base: base, fd: fd, options: [.closeOnFree]) { _, fd, peer in
            accepted.value.append(BEAccepted(fd: fd, peer: peer, statusFlags: fcntl(fd, F_GETFL), descriptorFlags: fcntl(fd, F_GETFD)))
        }
        let third = try BEKit.connect(to: address)
        defer { close(third) }
        #expect(try BEKit.run(base) { accepted.value.count == 2 })
        owning.free()
        #expect(try BEKit.run(base, timeout: .seconds(2)) { !BEKit.isOpen(fd, as: identity) })
        for connection in accepted.value { close(connection.fd) }
        BEKit.finish(base)
    }

    /// Adopting a descriptor that is not open throws.
    @Test func adoptingADescriptorThatIsNotOpenThrows() throws {
        let base = try BEKit.ownedBase()
        let fd = BEKit.unusedDescriptor()
        #expect(throws: EventError.badFileDescriptor(fd: fd, call: "ConnectionListener.init")) {
            _ = try ConnectionListener(base: base, fd: fd) { _, _, _ in }
        }
        #expect(throws: EventError.self) {
            _ = try ConnectionListener(base: base, fd: -1) { _, _, _ in }
        }
        BEKit.finish(base)
    }

    /// Binding an address in use fails with a typed error (EADDRINUSE).
    @Test func bindingAnAddressInUseThrows() throws {
        let base = try BEKit.ownedBase()
        let first = try ConnectionListener(base: base, address: try BEFamily.ipv4.bindAddress(), options: []) { _, fd, _ in close(fd) }
        let address = try #require(first.localAddress)
        do {
            let second = try ConnectionListener(base: base, address: address, options: []) { _, fd, _ in close(fd) }
            Issue.record("a second listener bound \(address)")
            second.free()
        } catch {
            guard case .system(let system) = error else {
                Issue.record("unexpected error \(error)")
                BEKit.finish(base, listeners: [first])
                return
            }
            #expect(system.errno == EADDRINUSE)
        }
        BEKit.finish(base, listeners: [first])
    }
}
