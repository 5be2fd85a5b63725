package herald

import "time"

// Version is Herald's version, sent in User-Agent as "Herald/<Version>".
const Version = "0.1.0"

// TimeFormat is how Herald writes times at the API and in envelopes: RFC 3339
// in UTC with microseconds, as in "2022-08-23T13:54:27.612477Z". Stores keep
// times to the microsecond.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// FormatTime writes t in UTC as TimeFormat.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }
