// Usage: NIOHello PORT [SECONDS] [THREADS]
import Dispatch
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

final class Hello: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: "6")
        let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: "hello\n")))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

let arguments = CommandLine.arguments
let port = arguments.count > 1 ? Int(arguments[1]) ?? 8080 : 8080
let seconds = arguments.count > 2 ? Int(arguments[2]) ?? 60 : 60
let threads = arguments.count > 3 ? Int(arguments[3]) ?? 1 : 1
let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let channel = try ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.backlog, value: 256)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(Hello()) }
    }
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .bind(host: "127.0.0.1", port: port).wait()
print("nio-hello: listening on 127.0.0.1:\(port)")
let timer = DispatchSource.makeTimerSource()
timer.schedule(deadline: .now() + .seconds(seconds))
timer.setEventHandler { channel.close(promise: nil) }
timer.resume()
let term = DispatchSource.makeSignalSource(signal: 15)
signal(15, SIG_IGN)
term.setEventHandler { channel.close(promise: nil) }
term.resume()
try channel.closeFuture.wait()
try group.syncShutdownGracefully()
