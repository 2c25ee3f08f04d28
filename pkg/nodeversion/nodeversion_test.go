package nodeversion

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestEdgecore(t *testing.T) {
	cases := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"v1.30.7-kubeedge-v1.21.0", "v1.21.0", true},
		{"v1.30.7-kubeedge-v1.21.0-beta.1", "v1.21.0-beta.1", true},
		{"v1.30.7", "", false},
		{"", "", false},
		{"v1.30.7-kubeedge-", "", false},
		{"v1.30.7-kubeedge-garbage", "", false},
		{"v1.30.7-kubeedge-v1.20.0-kubeedge-v1.21.0", "v1.21.0", true},
		// Strict: only the CRD's and the runner's version grammar is read.
		{"v1.30.7-kubeedge-v1.21.0 x;y", "", false},
		{"v1.30.7-kubeedge-v1.21.0\n", "", false},
		{"v1.30.7-kubeedge-v1.21", "", false},
		{"v1.30.7-kubeedge-1.21.0", "", false},
		{"v1.30.7-kubeedge-v1.21.0+build.1", "", false},
		{"v1.30.7-kubeedge-v1.21.0-rc_1", "v1.21.0-rc_1", true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			g := NewWithT(t)
			got, ok := Edgecore(c.in)
			g.Expect(ok).To(Equal(c.wantOK))
			g.Expect(got).To(Equal(c.want))
		})
	}
}

func TestAtLeast(t *testing.T) {
	cases := []struct {
		have, want string
		atLeast    bool
	}{
		{"v1.21.0", "v1.21.0", true},
		{"v1.22.0", "v1.21.0", true},
		{"v1.20.9", "v1.21.0", false},
		{"v1.21.0-beta.1", "v1.21.0", false},
		{"v1.21.0", "v1.21.0-beta.1", true},
		{"v1.21.0-rc_1", "v1.21.0-rc_1", true},
		{"", "v1.21.0", false},
		{"garbage", "v1.21.0", false},
		{"v1.21.0", "garbage", false},
	}
	for _, c := range cases {
		t.Run(c.have+">="+c.want, func(t *testing.T) {
			NewWithT(t).Expect(AtLeast(c.have, c.want)).To(Equal(c.atLeast))
		})
	}
}
