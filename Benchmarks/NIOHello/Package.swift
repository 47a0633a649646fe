// swift-tools-version: 6.1
// The SwiftNIO counterpart of `event-bench http-serve` and http_evhttp.c:
// a NIOHTTP1 server answering 200 "hello\n" on 127.0.0.1. Built apart from
// SwiftEvent (swift build -c release --package-path Benchmarks/NIOHello
// --scratch-path .build-nio) so the library never depends on NIO.
import PackageDescription

let package = Package(
    name: "NIOHello",
    dependencies: [.package(url: "https://github.com/apple/swift-nio", from: "2.101.2")],
    targets: [
        .executableTarget(
            name: "NIOHello",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
