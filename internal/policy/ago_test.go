package policy

import (
	"strings"
	"testing"
	"time"
)

func TestParseAgo(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30d", want: 30 * day},
		{in: "2d3h6m", want: 2*day + 3*time.Hour + 6*time.Minute},
		{in: "1d1h3m", want: 25*time.Hour + 3*time.Minute},
		{in: "1h", want: time.Hour},
		{in: "15m", want: 15 * time.Minute},
		{in: "0d", want: 0},
		{in: "0m", want: 0},
		{in: "0", want: 0},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "7d", want: 7 * day},
		{in: "007d", want: 7 * day},
		{in: "1d500ms", want: day + 500*time.Millisecond},
		// The 150-year cap, in either part and in the sum, without overflow.
		{in: "54750d", want: MaxAgo},
		{in: "54751d", want: MaxAgo},
		{in: "999999d", want: MaxAgo},
		{in: "99999999999999999999999d", want: MaxAgo},
		{in: "999999999h", want: MaxAgo},
		{in: "9999999999999999999h", want: MaxAgo},
		{in: "9999999d999999999h", want: MaxAgo},
		{in: "54749d48h", want: MaxAgo},
		{in: "54749d23h", want: MaxAgo - time.Hour},
		// Rejected (acr purge accepts some of these with surprising results).
		{in: "", wantErr: "empty"},
		{in: "-1d", wantErr: "non-negative whole number"},
		{in: "-1h", wantErr: "not a non-negative Go duration"},
		{in: "+1h", wantErr: "not a non-negative Go duration"},
		{in: "1d-1h", wantErr: "not a non-negative Go duration"},
		{in: "xd", wantErr: "whole number"},
		{in: "d", wantErr: "whole number"},
		{in: "1h30d", wantErr: "whole number"},
		{in: "15", wantErr: "Go duration"},
		{in: "15p", wantErr: "Go duration"},
		{in: "1dfoo", wantErr: "Go duration"},
		{in: "1d1d", wantErr: "Go duration"},
		{in: "1 d", wantErr: "whole number"},
		{in: " 1d", wantErr: "whole number"},
		{in: "1.d", wantErr: "whole number"},
		{in: ".h", wantErr: "Go duration"},
		{in: strings.Repeat("1", 65), wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAgo(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAgo(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseAgo(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}
