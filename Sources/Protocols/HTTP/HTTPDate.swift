import Glibc

/// HTTP dates (RFC 9110 5.6.7) in IMF-fixdate form, "Sun, 06 Nov 1994 08:49:37 GMT".
public enum HTTPDate {
    public static func format(_ time: time_t) -> String { HTTPDateCache.format(time) }

    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Parses IMF-fixdate; nil for anything else (the obsolete RFC 850 and
    /// asctime forms are not accepted: a conditional request then proceeds
    /// unconditionally, as RFC 9110 allows for an invalid date).
    public static func parse(_ text: String) -> time_t? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[0].count == 4, parts[0].hasSuffix(","), parts[5] == "GMT",
            let day = Int(parts[1]), parts[1].count == 2, let month = months.firstIndex(of: String(parts[2])),
            let year = Int(parts[3]), parts[3].count == 4
        else { return nil }
        let clock = parts[4].split(separator: ":")
        guard clock.count == 3, let hour = Int(clock[0]), let minute = Int(clock[1]), let second = Int(clock[2]),
            (1...31).contains(day), (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second)
        else { return nil }
        var fields = tm()
        fields.tm_year = Int32(year - 1900)
        fields.tm_mon = Int32(month)
        fields.tm_mday = Int32(day)
        fields.tm_hour = Int32(hour)
        fields.tm_min = Int32(minute)
        fields.tm_sec = Int32(second)
        return timegm(&fields)
    }
}
