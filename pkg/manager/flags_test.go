package manager

import (
	"flag"
	"io"
	"testing"

	. "github.com/onsi/gomega"
)

func TestImagePullSecretsFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    []string
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{"--image-pull-secrets=registry-creds"}, []string{"registry-creds"}, ""},
		{[]string{"--image-pull-secrets= a , b.c ,"}, []string{"a", "b.c"}, ""},
		{[]string{"--image-pull-secrets=Bad_Name"}, nil, `secret name "Bad_Name"`},
	} {
		g := NewWithT(t)
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := BindFlags(fs)
		err := fs.Parse(tc.args)
		if tc.wantErr != "" {
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Controller.ImagePullSecrets).To(Equal(tc.want))
	}
}
