import EventBackends
import EventBuffers
import EventCore
import EventLocking
import EventTestSupport
import Glibc
import Testing

@Suite struct EchoSmokeTests {
    @Test func echoOverTCP() throws {
        let base = try EventBase(.init(method: .epoll, lockProvider: NoLockProvider()))
        let servers = Box<[BufferEvent]>([])
        let listener = try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: 0)) { listener, fd, _ in
            let bev = try! SocketBufferEvent(base: listener.base, fd: fd, options: [.closeOnFree])
            bev.setCallbacks(read: { bev in try! bev.output.add(buffer: bev.input) }, write: nil, event: { bev, what, _ in
                if what.contains(.endOfFile) { bev.free() }
            })
            try! bev.enable(.read)
            servers.value = servers.value! + [bev]
        }
        let port = try #require(listener.localAddress?.port)
        let client = try SocketBufferEvent(base: base, options: [.closeOnFree])
        let received = Box<String>("")
        let connected = Box<Bool>(false)
        client.setCallbacks(read: { bev in
            received.value = received.value! + ((try? bev.input.string()) ?? "")
            try? bev.input.drain(bev.input.count)
            if received.value!.count >= 5 { try? bev.base.loopBreak() }
        }, write: nil, event: { _, what, _ in if what.contains(.connected) { connected.value = true } })
        try client.enable(.read)
        try client.connect(to: try SocketAddress(ipv4: "127.0.0.1", port: port))
        try client.write("hello")
        try base.loopExit(after: .seconds(5))
        try base.loop()
        #expect(connected.value == true)
        #expect(received.value == "hello")
        client.free()
        listener.free()
        for server in servers.value! { server.free() }
    }
}
