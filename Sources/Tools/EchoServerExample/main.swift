// The README's echo server: every connection gets back what it sends.
// Usage: EchoServerExample [port] (default 8007); stops on SIGINT.
import EventBuffers
import EventCore
import Glibc

let port = CommandLine.arguments.count > 1 ? UInt16(CommandLine.arguments[1]) ?? 8007 : 8007
let base = try EventBase()

let listener = try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: port)) {
    listener, fd, peer in
    guard let connection = try? SocketBufferEvent(base: listener.base, fd: fd, options: [.closeOnFree]) else { return }
    connection.setCallbacks(
        read: { connection in try? connection.output.add(buffer: connection.input) },  // echo, no copy
        write: nil,
        event: { connection, what, _ in
            if what.contains(.endOfFile) || what.contains(.error) { connection.free() }
        })
    try? connection.enable(.read)
}

let interrupt = try Event(base: base, signal: SIGINT) { event, _ in try? event.base.loopExit() }
try interrupt.add()
print("echoing on 127.0.0.1:\(listener.localAddress?.port ?? port)")
try base.dispatch()
listener.free()
