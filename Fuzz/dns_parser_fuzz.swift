// libFuzzer target for the DNS message parser (Sources/Protocols/DNS/DNSMessage.swift):
// any bytes must parse or throw, never trap or hang; what parses must
// serialize and parse again to the same message.
//   swiftc -sanitize=fuzzer,address -parse-as-library -O Fuzz/dns_parser_fuzz.swift \
//       Sources/Protocols/DNS/DNSMessage.swift -o .build/dns-fuzz
//   SWIFT_BACKTRACE=enable=no .build/dns-fuzz -max_total_time=30 Fuzz/corpus
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let message = try? DNSMessage.parse(bytes) else { return 0 }
    // Round trip: our own serialization of what we accepted parses back the same.
    if let again = try? message.serialized(), let reparsed = try? DNSMessage.parse(again) {
        precondition(reparsed == message, "round trip changed the message")
    }
    return 0
}
