package herald

import "time"

// Version is Herald's version, sent in User-Agent as "Herald/<Version>".
const Version = "0.1.0"

// TimeFormat is how Herald writes times at the API and in envelopes: RFC 3339
// in UTC with microseconds, as in "2022-08-23T13:54:27.612477Z". Stores keep
// times to the microsecond.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// FormatTime writes t in UTC as TimeFormat.
func FormatTime(t time.Time) string { return string(AppendTime(nil, t)) }

// AppendTime appends t in UTC as TimeFormat to dst. It is
// t.UTC().AppendFormat(dst, TimeFormat) without reading the layout, which
// is most of that call's cost: every envelope carries a time.
func AppendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, TimeFormat)
	}
	hour, minute, sec := t.Clock()
	micro := t.Nanosecond() / 1000
	n := func(v, width int) {
		for d := width - 1; d >= 0; d-- {
			dst = append(dst, '0')
		}
		for i, k := len(dst)-1, 0; k < width; i, k = i-1, k+1 {
			dst[i] = byte('0' + v%10)
			v /= 10
		}
	}
	n(year, 4)
	dst = append(dst, '-')
	n(int(month), 2)
	dst = append(dst, '-')
	n(day, 2)
	dst = append(dst, 'T')
	n(hour, 2)
	dst = append(dst, ':')
	n(minute, 2)
	dst = append(dst, ':')
	n(sec, 2)
	dst = append(dst, '.')
	n(micro, 6)
	return append(dst, 'Z')
}
