// libFuzzer target for the evtag decoder (Sources/Protocols/RPC/EVTag.swift):
// any bytes must decode as records or throw, never trap or hang; every
// integer and tag decoded re-encodes to bytes that decode to the same value.
//   swiftc -sanitize=fuzzer,address -parse-as-library -O Fuzz/evtag_fuzz.swift \
//       Sources/Protocols/RPC/EVTag.swift -o .build/evtag-fuzz
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var decoder = EVTagDecoder(bytes)
    var depth = 0
    while !decoder.isAtEnd, depth < 1000 {
        depth += 1
        guard var (tag, payload) = try? decoder.record() else { break }
        var encoder = EVTagEncoder()
        encoder.tag(tag)
        var again = EVTagDecoder(encoder.bytes)
        precondition((try? again.tag()) == tag, "tag round trip")
        if let value = try? payload.int64() {
            var encoder = EVTagEncoder()
            encoder.int64(value)
            var again = EVTagDecoder(encoder.bytes)
            precondition((try? again.int64()) == value, "integer round trip")
        }
    }
    return 0
}
