import EventBuffers
import EventCore
import EventHTTP
import EventLocking
import EventRPC
import EventTestSupport
import Foundation
import Glibc
import Testing

@Suite("evrpc hooks: continue, terminate, pause and resume, metadata")
struct RPCHookTests {
    private func call(_ pool: RPCClientPool, _ value: UInt32) -> Result<EchoReply, RPCError>? {
        let waiter = Waiter<Result<EchoReply, RPCError>>()
        pool.call("Echo", EchoRequest(value: value, text: "t"), reply: EchoReply.self) { waiter.set($0) }
        return waiter.wait()
    }

    @Test func serverHooksSeeAndChangeMessagesAndShareMetadata() throws {
        let fixture = try RPCTests.Fixture()
        defer { fixture.stop() }
        let seen = AtomicCounter()
        fixture.rpc.addHook(.input) { context in
            seen.increment()
            context.setMetadata("arrived", "yes")
            // Rewrite the request: value 7 becomes 8 (evtag of tag 1 = int 8, tag 2 = "t").
            var decoded = EVTagDecoder(context.body)
            if (try? decoded.unmarshalInt(1)) == 7 {
                var encoder = EVTagEncoder()
                encoder.marshalInt(1, 8)
                encoder.marshalString(2, "t")
                context.body = encoder.bytes
            }
            return .continue
        }
        fixture.rpc.addHook(.output) { context in
            var headers = context.headers
            headers.add("X-Metadata", context.metadata("arrived") ?? "missing")
            context.headers = headers
            return .continue
        }
        let pool = RPCClientPool(base: fixture.base, host: "127.0.0.1", port: fixture.port)
        let metadataSeen = Waiter<String>()
        pool.addHook(.input) { context in
            metadataSeen.set(context.headers["X-Metadata"] ?? "none")
            return .continue
        }
        #expect(try call(pool, 7)?.get().value == 16)
        #expect(metadataSeen.wait() == "yes")
        #expect(seen.value == 1)
        pool.free()
    }

    @Test func terminatingHooksEndTheCall() throws {
        let fixture = try RPCTests.Fixture()
        defer { fixture.stop() }
        fixture.rpc.addHook(.input) { context in
            var decoder = EVTagDecoder(context.body)
            return (try? decoder.unmarshalInt(1)) == 13 ? .terminate : .continue
        }
        let pool = RPCClientPool(base: fixture.base, host: "127.0.0.1", port: fixture.port)
        let refused = call(pool, 13)
        #expect(refused.map { if case .failure(.badReply(let why)) = $0 { why.contains("503") } else { false } } == true)
        #expect(try call(pool, 2)?.get().value == 4)
        // A client output hook that terminates: the call never starts.
        pool.addHook(.output) { _ in .terminate }
        let unstarted = call(pool, 2)
        #expect(unstarted.map { if case .failure(.unstarted) = $0 { true } else { false } } == true)
        pool.free()
    }

    /// A hook pauses; another thread resumes the call later (with
    /// continue, then with terminate for a second call).
    @Test func pausedHooksResumeFromAnotherThread() throws {
        let fixture = try RPCTests.Fixture()
        defer { fixture.stop() }
        let decisions = Guarded<[RPCHookResult]>([.continue, .terminate])
        fixture.rpc.addHook(.input) { context in
            let decision = decisions.withLock { $0.removeFirst() }
            Thread.detachNewThread {
                usleep(100_000)
                context.resume(decision)
            }
            return .pause
        }
        let pool = RPCClientPool(base: fixture.base, host: "127.0.0.1", port: fixture.port)
        let start = now()
        #expect(try call(pool, 5)?.get().value == 10)
        #expect(now() - start >= .milliseconds(90))
        let second = call(pool, 5)
        #expect(second.map { if case .failure(.badReply) = $0 { true } else { false } } == true)
        pool.free()
    }
}
