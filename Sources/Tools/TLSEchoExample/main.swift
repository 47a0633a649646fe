// The README's TLS echo server and client.
//   TLSEchoExample server PORT CERT.pem KEY.pem   echo over TLS until SIGINT
//   TLSEchoExample client PORT CA.pem [NAME]      send stdin's first line, print the echo
//   TLSEchoExample                                both in one process, with a fresh
//                                                 self-signed certificate; exits 0 on success
import EventBuffers
import EventCore
import EventSSL
import Glibc

/// The server: every TLS connection gets back what it sends.
func startServer(base: EventBase, port: UInt16, context: SSLContext) throws -> ConnectionListener {
    try ConnectionListener(base: base, address: try SocketAddress(ipv4: "127.0.0.1", port: port)) { listener, fd, _ in
        guard let connection = try? SSLBufferEvent(base: listener.base, socket: fd, context: context, options: [.closeOnFree])
        else {
            close(fd)
            return
        }
        connection.setCallbacks(
            read: { connection in try? connection.output.add(buffer: connection.input) },
            write: nil,
            event: { connection, what, _ in
                if let tls = connection as? SSLBufferEvent, let error = tls.lastError { print("server: \(error)") }
                if what.contains(.endOfFile) || what.contains(.error) || what.contains(.timeout) { connection.free() }
            })
        try? connection.enable(.read)
    }
}

/// The client: connects, verifies the server as `name`, sends `line`,
/// prints what comes back, then closes (sending close_notify).
func runClient(base: EventBase, port: UInt16, context: SSLContext, name: String, line: String) throws -> Bool {
    let client = try SSLBufferEvent(base: base, context: context, serverName: name, options: [.closeOnFree])
    final class Result: @unchecked Sendable { var text = ""; var ok = false }  // loop thread only
    let result = Result()
    client.setCallbacks(
        read: { bev in
            result.text += (try? bev.input.string()) ?? ""
            try? bev.input.drain(bev.input.count)
            if result.text.contains("\n") {
                result.ok = true
                try? bev.base.loopBreak()
            }
        },
        write: nil,
        event: { bev, what, _ in
            if what.contains(.connected), let tls = bev as? SSLBufferEvent {
                print("client: connected, \(tls.protocolVersion) \(tls.cipherName ?? "")")
            } else {
                print("client: \(what) \((bev as? SSLBufferEvent)?.lastError?.description ?? "")")
                try? bev.base.loopBreak()
            }
        })
    try client.enable(.read)
    try client.connect(to: try SocketAddress(ipv4: "127.0.0.1", port: port))
    try client.write(line + "\n")
    try base.dispatch()
    print("client: echoed \(result.text.debugDescription)")
    client.free()
    return result.ok
}

let arguments = Array(CommandLine.arguments.dropFirst())
let base = try EventBase()
switch arguments.first {
case "server" where arguments.count == 4:
    let context = try SSLContext(.server(certificateChain: .file(arguments[2]), privateKey: .file(arguments[3])))
    let listener = try startServer(base: base, port: UInt16(arguments[1]) ?? 8443, context: context)
    let interrupt = try Event(base: base, signal: SIGINT) { event, _ in try? event.base.loopExit() }
    try interrupt.add()
    print("TLS echo on 127.0.0.1:\(listener.localAddress?.port ?? 0)")
    try base.dispatch()
    listener.free()
case "client" where arguments.count >= 3:
    let context = try SSLContext(.client(trustRoots: [.file(arguments[2])]))
    let line = readLine() ?? "hello"
    let ok = try runClient(
        base: base, port: UInt16(arguments[1]) ?? 8443, context: context,
        name: arguments.count > 3 ? arguments[3] : "localhost", line: line)
    exit(ok ? 0 : 1)
case nil:
    let (certificate, key) = try SSLContext.selfSignedCertificate(name: "localhost")
    let server = try SSLContext(.server(certificateChain: .text(certificate), privateKey: .text(key)))
    let listener = try startServer(base: base, port: 0, context: server)
    let client = try SSLContext(.client(trustRoots: [.text(certificate)]))
    let ok = try runClient(
        base: base, port: listener.localAddress?.port ?? 0, context: client, name: "localhost", line: "hello over TLS")
    listener.free()
    exit(ok ? 0 : 1)
default:
    print("usage: TLSEchoExample [server PORT CERT KEY | client PORT CA [NAME]]")
    exit(2)
}
