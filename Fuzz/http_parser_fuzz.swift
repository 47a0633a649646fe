// libFuzzer target for the HTTP request parser and the chunked decoder
// (Sources/Protocols/HTTP/HTTPParser.swift): any bytes must be framed or
// refused with a status, never trap or hang; a chunked body decodes the
// same whether fed whole or byte by byte.
//   swiftc -sanitize=fuzzer,address -parse-as-library -O Fuzz/http_parser_fuzz.swift \
//       Sources/Protocols/HTTP/HTTPParser.swift Sources/Protocols/HTTP/HTTPHeaders.swift -o .build/http-fuzz
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var limits = HTTPLimits()
    limits.maxBodyBytes = 1 << 20
    guard let end = try? HTTPSyntax.headerEnd(bytes, limit: limits.maxHeaderBytes) else {
        chunkedRoundTrip(bytes[...], limits)
        return 0
    }
    if let head = try? HTTPSyntax.requestHead(bytes[0..<max(0, end - 4)].drop { $0 == 0x0D || $0 == 0x0A }, limits: limits) {
        _ = try? HTTPSyntax.requestFraming(head, limits: limits)
    }
    chunkedRoundTrip(bytes[end...], limits)
    return 0
}

/// Whole versus byte-by-byte feeding must agree.
func chunkedRoundTrip(_ body: ArraySlice<UInt8>, _ limits: HTTPLimits) {
    var whole = ChunkedDecoder()
    var wholeOut: [UInt8] = []
    let wholeResult: Int? = Array(body).withUnsafeBytes { raw in
        try? whole.consume(raw, limits: limits) { wholeOut += $0 }
    }
    var stepwise = ChunkedDecoder()
    var stepOut: [UInt8] = []
    var pending: [UInt8] = []
    var failed = false
    for byte in body {
        pending.append(byte)
        let used: Int? = pending.withUnsafeBytes { raw in try? stepwise.consume(raw, limits: limits) { stepOut += $0 } }
        guard let used else {
            failed = true
            break
        }
        pending.removeFirst(used)
        if stepwise.isDone { break }
    }
    if wholeResult != nil && whole.isDone {
        precondition(!failed && stepwise.isDone && stepOut == wholeOut, "chunked decoding depends on how bytes arrive")
    }
}
