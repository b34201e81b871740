package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
)

// Audience is aud: written as an array, read as a string or an array of
// strings (RFC 7519 §4.1.3).
type Audience []string

// MarshalJSON writes an array, even of one audience.
func (a Audience) MarshalJSON() ([]byte, error) { return json.Marshal([]string(a)) }

// UnmarshalJSON reads a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var err error
	if bytes.HasPrefix(b, []byte(`"`)) {
		var s string
		if err = json.Unmarshal(b, &s); err == nil {
			*a = Audience{s}
		}
	} else {
		err = json.Unmarshal(b, (*[]string)(a))
	}
	if err != nil {
		return errors.New("aud: not a string or an array of strings")
	}
	return nil
}

// NumericDate is a JWT NumericDate (RFC 7519 §2): seconds since the
// epoch. Fractions are dropped on reading.
type NumericDate int64

// maxDate bounds NumericDates to year 5138, far inside time.Time's range.
const maxDate = 1 << 37

// NewNumericDate returns t in whole seconds; nil for the zero time, so
// that the claim is left out.
func NewNumericDate(t time.Time) *NumericDate {
	if t.IsZero() {
		return nil
	}
	d := NumericDate(t.Unix())
	return &d
}

// Time returns d in UTC; the zero time for nil.
func (d *NumericDate) Time() time.Time {
	if d == nil {
		return time.Time{}
	}
	return time.Unix(int64(*d), 0).UTC()
}

// UnmarshalJSON reads a non-negative JSON number below year 5138; a
// string, boolean or null is an error.
func (d *NumericDate) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f >= maxDate {
		return errors.New("NumericDate must be a number of seconds since 1970")
	}
	*d = NumericDate(f)
	return nil
}
