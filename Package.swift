// swift-tools-version: 6.1
//
// SwiftEvent: libevent rebuilt in Swift for Linux servers.
// Layers (bottom to top) follow ../shared/DESIGN.md: C shims, EventLocking,
// EventBackends, EventCore. Each layer imports only the layers below it.

import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "SwiftEvent",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "EventCore", targets: ["EventCore"]),
        .library(name: "EventLocking", targets: ["EventLocking"]),
        .library(name: "EventBackends", targets: ["EventBackends"]),
        .library(name: "EventBuffers", targets: ["EventBuffers"]),
        .library(name: "EventSSL", targets: ["EventSSL"]),
        .library(name: "EventDNS", targets: ["EventDNS"]),
        .library(name: "EventHTTP", targets: ["EventHTTP"]),
        .library(name: "EventRPC", targets: ["EventRPC"]),
        .executable(name: "event-bench", targets: ["EventBench"]),
        .executable(name: "event-dns", targets: ["EventDNSTool"]),
        .executable(name: "event-httpd", targets: ["EventHTTPD"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // What Swift cannot import: epoll/eventfd/timerfd, the async-signal-safe
        // signal handler, fd_set-sized select, the thread-local thread id.
        .target(
            name: "CEventShims",
            path: "Sources/CShims/CEventShims"
        ),
        // Counts heap allocations by interposing malloc and friends; linked
        // only into event-bench (its `allocations` subcommand).
        .target(
            name: "CAllocationCounter",
            path: "Sources/CShims/CAllocationCounter"
        ),
        // liburcu (memb flavour), linked through pkg-config. No _LGPL_SOURCE.
        .systemLibrary(
            name: "CLibURCU",
            path: "Sources/CShims/CLibURCU",
            pkgConfig: "liburcu-memb",
            providers: [.apt(["liburcu-dev"])]
        ),
        // Wrappers over liburcu's exported calls, thread registration and the
        // ThreadSanitizer annotations for grace periods.
        .target(
            name: "CURCUShim",
            dependencies: ["CLibURCU"],
            path: "Sources/CShims/CURCUShim"
        ),
        .target(
            name: "EventLocking",
            dependencies: [
                "CEventShims",
                "CURCUShim",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Locking",
            swiftSettings: strict
        ),
        .target(
            name: "EventBackends",
            dependencies: ["CEventShims"],
            path: "Sources/Backends",
            swiftSettings: strict
        ),
        .target(
            name: "EventCore",
            dependencies: [
                "CEventShims",
                "EventLocking",
                "EventBackends",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Base",
            swiftSettings: strict
        ),
        .target(
            name: "EventBuffers",
            dependencies: [
                "CEventShims",
                "EventLocking",
                "EventBackends",
                "EventCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Buffers",
            swiftSettings: strict
        ),
        // The system OpenSSL 3 (Debian's libssl-dev), through pkg-config.
        .systemLibrary(
            name: "COpenSSL",
            path: "Sources/CShims/COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // OpenSSL calls that are macros, option bits, SNI and ALPN callbacks.
        .target(
            name: "CSSLShim",
            dependencies: ["COpenSSL"],
            path: "Sources/CShims/CSSLShim"
        ),
        .target(
            name: "EventSSL",
            dependencies: [
                "CEventShims",
                "COpenSSL",
                "CSSLShim",
                "EventCore",
                "EventBuffers",
            ],
            path: "Sources/Protocols/SSL",
            swiftSettings: strict
        ),
        .target(
            name: "EventDNS",
            dependencies: [
                "CEventShims",
                "EventLocking",
                "EventBackends",
                "EventCore",
                "EventBuffers",
            ],
            path: "Sources/Protocols/DNS",
            swiftSettings: strict
        ),
        .target(
            name: "EventHTTP",
            dependencies: [
                "CEventShims",
                "EventLocking",
                "EventBackends",
                "EventCore",
                "EventBuffers",
                "EventSSL",
                "EventDNS",
            ],
            path: "Sources/Protocols/HTTP",
            swiftSettings: strict
        ),
        .target(
            name: "EventRPC",
            dependencies: ["EventLocking", "EventCore", "EventBuffers", "EventHTTP"],
            path: "Sources/Protocols/RPC",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EventBench",
            dependencies: [
                "EventCore",
                "EventBuffers",
                "EventSSL",
                "EventHTTP",
                "EventRPC",
                "CAllocationCounter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Tools/EventBench",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EchoServerExample",
            dependencies: ["EventCore", "EventBuffers"],
            path: "Sources/Tools/EchoServerExample",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EventDNSTool",
            dependencies: [
                "EventCore", "EventBuffers", "EventDNS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Tools/EventDNSTool",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EventHTTPD",
            dependencies: [
                "EventCore", "EventBuffers", "EventHTTP", "EventSSL", "EventLocking",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Tools/EventHTTPD",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "TLSEchoExample",
            dependencies: ["EventCore", "EventBuffers", "EventSSL"],
            path: "Sources/Tools/TLSEchoExample",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "SharedBaseExample",
            dependencies: ["EventCore"],
            path: "Sources/Tools/SharedBaseExample",
            swiftSettings: strict
        ),
        .target(
            name: "EventTestSupport",
            dependencies: ["EventLocking", "EventCore"],
            path: "Tests/Support",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventLockingTests",
            dependencies: ["EventLocking", "EventTestSupport"],
            path: "Tests/EventLockingTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventBackendsTests",
            dependencies: ["EventBackends", "CEventShims", "EventTestSupport"],
            path: "Tests/EventBackendsTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventCoreTests",
            dependencies: ["EventCore", "CEventShims", "EventTestSupport"],
            path: "Tests/EventCoreTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventBuffersTests",
            dependencies: ["EventBuffers", "CEventShims", "EventTestSupport"],
            path: "Tests/EventBuffersTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventSSLTests",
            dependencies: ["EventSSL", "EventBuffers", "EventCore", "COpenSSL", "CSSLShim", "EventTestSupport"],
            path: "Tests/EventSSLTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventDNSTests",
            dependencies: ["EventDNS", "EventBuffers", "EventCore", "EventTestSupport"],
            path: "Tests/EventDNSTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventHTTPTests",
            dependencies: ["EventHTTP", "EventSSL", "EventDNS", "EventBuffers", "EventCore", "EventTestSupport"],
            path: "Tests/EventHTTPTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventRPCTests",
            dependencies: ["EventRPC", "EventHTTP", "EventBuffers", "EventCore", "EventTestSupport"],
            path: "Tests/EventRPCTests",
            exclude: ["evtag_interop.c", "rpc_interop.c"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventAsyncTests",
            dependencies: ["EventCore", "EventBuffers", "EventDNS", "EventHTTP", "EventRPC", "CEventShims", "EventTestSupport"],
            path: "Tests/EventAsyncTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "StressTests",
            dependencies: ["EventCore", "EventBuffers", "EventDNS", "EventHTTP", "EventTestSupport"],
            path: "StressTests",
            swiftSettings: strict
        ),
    ]
)
