package imageref

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	. "github.com/onsi/gomega"
)

func TestValidateVersion(t *testing.T) {
	tests := []struct {
		name    string
		version string
		wantErr string // substring; empty means valid
	}{
		{"plain", "v1.21.0", ""},
		{"suffix", "v1.21.0-beta.1", ""},
		{"multi suffix", "v1.21.0-rc_1-kubeedge.2", ""},
		{"big numbers", "v10.200.3000", ""},
		{"empty", "", "empty"},
		{"no v", "1.21.0", "not of the form"},
		{"two parts", "v1.21", "not of the form"},
		{"empty suffix", "v1.21.0-", "not of the form"},
		{"double dash", "v1.21.0--x", "not of the form"},
		{"plus build", "v1.21.0+build", "not of the form"},
		{"space", "v1.21.0 ", "not of the form"},
		{"newline", "v1.21.0\n", "not of the form"},
		{"command", "v1.21.0-$(reboot)", "not of the form"},
		{"semicolon", "v1.21.0;reboot", "not of the form"},
		{"unicode digit", "v1.٢.0", "not of the form"},
		{"too long", "v1.2.3-" + strings.Repeat("a", 122), "maximum is 128"},
		{"max length", "v1.2.3-" + strings.Repeat("a", 121), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := ValidateVersion(tt.version)
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestNormalize(t *testing.T) {
	const v = "v1.21.0"
	tests := []struct {
		name    string
		image   string
		version string
		want    string
		wantErr string
	}{
		{"default", "", v, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"too long once tagged", strings.Repeat("a", 230), v, "", "becomes 256 characters long once normalised"},
		{"short", "kubeedge/installation-package", v, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"tag replaced", "kubeedge/installation-package:v1.19.0", v, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"digest dropped", "kubeedge/installation-package@sha256:" + strings.Repeat("a", 64), v, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"tag and digest dropped", "kubeedge/installation-package:x@sha256:" + strings.Repeat("0", 64), v, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"single name", "busybox", v, "docker.io/library/busybox:v1.21.0", ""},
		{"single name with tag", "busybox:latest", v, "docker.io/library/busybox:v1.21.0", ""},
		{"explicit docker.io", "docker.io/kubeedge/installation-package", v, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"docker.io single", "docker.io/busybox", v, "docker.io/library/busybox:v1.21.0", ""},
		{"index.docker.io", "index.docker.io/kubeedge/installation-package", v, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"registry with port", "myreg:5000/kubeedge/installation-package:old", v, "myreg:5000/kubeedge/installation-package:v1.21.0", ""},
		{"registry port no tag", "myreg:5000/kubeedge/installation-package", v, "myreg:5000/kubeedge/installation-package:v1.21.0", ""},
		{"localhost", "localhost/kubeedge/installation-package", v, "localhost/kubeedge/installation-package:v1.21.0", ""},
		{"localhost port", "localhost:5000/pkg", v, "localhost:5000/pkg:v1.21.0", ""},
		{"dotted registry", "registry.example.com/a/b/c:1", v, "registry.example.com/a/b/c:v1.21.0", ""},
		{"separators", "quay.io/a_b/c__d/e--f/g.h", v, "quay.io/a_b/c__d/e--f/g.h:v1.21.0", ""},
		{"suffix version", "kubeedge/installation-package", "v1.21.0-beta.1", "docker.io/kubeedge/installation-package:v1.21.0-beta.1", ""},
		{"uppercase host is lowercased", "MyReg.example.com/pkg", v, "myreg.example.com/pkg:v1.21.0", ""},
		{"uppercase dotless host is kept", "MyReg/pkg", v, "MyReg/pkg:v1.21.0", ""},

		{"bad version", "kubeedge/installation-package", "1.21", "", "invalid version"},
		{"empty version", "", "", "", "invalid version"},
		{"uppercase path", "kubeedge/Installation-Package", v, "", "must be lowercase"},
		{"uppercase single", "docker.io/Busybox", v, "", "must be lowercase"},
		{"space", "kubeedge/installation package", v, "", "forbidden character"},
		{"leading space", " kubeedge/installation-package", v, "", "forbidden character"},
		{"newline", "kubeedge/installation-package\nreboot", v, "", "forbidden character"},
		{"tab", "kubeedge/\tx", v, "", "forbidden character"},
		{"command substitution", "kubeedge/$(reboot)", v, "", "forbidden character"},
		{"backticks", "kubeedge/`reboot`", v, "", "forbidden character"},
		{"semicolon", "kubeedge/x;reboot", v, "", "forbidden character"},
		{"pipe", "kubeedge/x|sh", v, "", "forbidden character"},
		{"and", "kubeedge/x&&reboot", v, "", "forbidden character"},
		{"quote", "kubeedge/x'", v, "", "forbidden character"},
		{"redirect", "kubeedge/x>/etc/passwd", v, "", "forbidden character"},
		{"unicode", "kubeedge/inställation", v, "", "forbidden character"},
		{"nul", "kubeedge/x\x00", v, "", "forbidden character"},
		{"empty component", "kubeedge//installation-package", v, "", "empty path component"},
		{"trailing slash", "kubeedge/installation-package/", v, "", "empty path component"},
		{"leading slash", "/kubeedge/installation-package", v, "", "empty path component"},
		{"host only", "myreg:5000/", v, "", "no repository path"},
		{"only tag", ":v1", v, "", "no repository name"},
		{"bad tag", "kubeedge/x:.bad", v, "", "malformed tag"},
		{"bad digest", "kubeedge/x@sha256:zz", v, "", "malformed digest"},
		{"bad port", "myreg:50a0/x/y", v, "", "invalid registry host"},
		{"bad host", "-myreg.io/x", v, "", "invalid registry host"},
		{"dot dot", "kubeedge/../etc", v, "", "must be lowercase letters"},
		{"leading dash component", "kubeedge/-x", v, "", "must be lowercase letters"},
		{"too long", "kubeedge/" + strings.Repeat("a", 250), v, "", "maximum is 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := Normalize(tt.image, tt.version)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(got).To(BeEmpty())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
			g.Expect(got).To(MatchRegexp(safeOutput.String()))
			again, err := Normalize(got, tt.version)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(again).To(Equal(got), "Normalize must be idempotent")
		})
	}
}

func TestRepository(t *testing.T) {
	tests := []struct {
		image, want string
	}{
		{"", "docker.io/kubeedge/installation-package"},
		{"kubeedge/installation-package:v1.0.0", "docker.io/kubeedge/installation-package"},
		{"busybox", "docker.io/library/busybox"},
		{"myreg:5000/kubeedge/installation-package:old", "myreg:5000/kubeedge/installation-package"},
		{"localhost/x", "localhost/x"},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			g := NewWithT(t)
			got, err := Repository(tt.image)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
	_, err := Repository("a/b;c")
	NewWithT(t).Expect(err).To(HaveOccurred())
}

func TestRepositoryAllowed(t *testing.T) {
	tests := []struct {
		name    string
		repo    string
		allowed []string
		want    bool
	}{
		{"empty list allows", "docker.io/anything/x", nil, true},
		{"exact", "docker.io/kubeedge/installation-package", []string{"docker.io/kubeedge/installation-package"}, true},
		{"exact mismatch", "docker.io/kubeedge/installation-package2", []string{"docker.io/kubeedge/installation-package"}, false},
		{"prefix", "docker.io/kubeedge/installation-package", []string{"docker.io/kubeedge/"}, true},
		{"prefix needs slash boundary", "docker.io/kubeedgeevil/installation-package", []string{"docker.io/kubeedge/"}, false},
		{"entry without slash is not a prefix", "docker.io/kubeedge/installation-package", []string{"docker.io/kubeedge"}, false},
		{"registry prefix", "myreg:5000/a/b", []string{"other.io/", "myreg:5000/"}, true},
		{"other registry", "evil.io/kubeedge/installation-package", []string{"docker.io/kubeedge/"}, false},
		{"short repo normalised", "kubeedge/installation-package", []string{"docker.io/kubeedge/"}, true},
		{"short entry normalised", "docker.io/kubeedge/installation-package", []string{"kubeedge/installation-package"}, true},
		{"library", "busybox", []string{"docker.io/library/busybox"}, true},
		{"invalid repo refused", "docker.io/kubeedge/$(x)", []string{"docker.io/kubeedge/"}, false},
		{"empty repo refused", "", []string{"docker.io/kubeedge/"}, false},
		{"empty entry ignored", "docker.io/kubeedge/x", []string{""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(RepositoryAllowed(tt.repo, tt.allowed)).To(Equal(tt.want))
		})
	}
}

func TestNormalizeAllowList(t *testing.T) {
	g := NewWithT(t)
	got, err := NormalizeAllowList([]string{
		"kubeedge/", "index.docker.io/kubeedge/", "Docker.io/kubeedge/", " docker.io/kubeedge/ ", "",
		"kubeedge/installation-package", "Registry.Example.com:5000/mirror/", "docker.io/", "localhost:5000/a",
		"busybox",
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal([]string{
		"docker.io/kubeedge/", "docker.io/kubeedge/", "docker.io/kubeedge/", "docker.io/kubeedge/",
		"docker.io/kubeedge/installation-package", "registry.example.com:5000/mirror/", "docker.io/", "localhost:5000/a",
		"docker.io/library/busybox",
	}))
	// Each normalised entry now admits the job images it was meant for.
	for _, image := range []string{"kubeedge/installation-package", "Docker.io/kubeedge/installation-package", "index.docker.io/kubeedge/installation-package:v1"} {
		repo, err := Repository(image)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(RepositoryAllowed(repo, got[:1])).To(BeTrue(), "%s under %v", image, got[:1])
	}
	g.Expect(RepositoryAllowed("docker.io/evil/x", got[:1])).To(BeFalse())

	for _, bad := range []string{"/", "kubeedge/Installer", "docker.io/kubeedge/x:v1.21.0", "docker.io/kubeedge/x@sha256:" + strings.Repeat("a", 64),
		"evil.io/$(reboot)/", "a//", "docker.io/x y"} {
		_, err := NormalizeAllowList([]string{bad})
		g.Expect(err).To(HaveOccurred(), "entry %q", bad)
	}
}

// safeOutput is what any accepted Normalize output must look like: a host of
// letters, digits, dots and dashes with an optional port, lowercase path
// components, and a tag. No character a shell or YAML would interpret.
var safeOutput = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+:[A-Za-z0-9_.-]+$`)

func FuzzNormalize(f *testing.F) {
	seeds := []struct{ image, version string }{
		{"", "v1.21.0"},
		{"kubeedge/installation-package", "v1.21.0"},
		{"busybox:latest", "v1.0.0-rc.1"},
		{"myreg:5000/kubeedge/installation-package:old", "v1.21.0"},
		{"localhost/a@sha256:" + strings.Repeat("a", 64), "v1.2.3"},
		{"kubeedge/x;reboot", "v1.21.0"},
		{"kubeedge/x|sh", "v1.21.0"},
		{"kubeedge/x&&reboot", "v1.21.0"},
		{"kubeedge/$(reboot)", "v1.21.0"},
		{"kubeedge/`reboot`", "v1.21.0"},
		{"kubeedge/x y", "v1.21.0"},
		{"kubeedge/x\nreboot", "v1.21.0"},
		{"kubeedge/x", "v1.21.0\n"},
		{"kubeedge/x", "v1.21.0;reboot"},
		{"kubeedge/x", "$(reboot)"},
		{"kubeedge/ünïcödé", "v1.21.0"},
		{"kubeedge/x", "v1.2.3-ü"},
		{"KubeEdge/x", "v1.21.0"},
		{"a//b", "v1.21.0"},
		{"a:b:c/d", "v1.21.0"},
		{"@", "v1.21.0"},
		{":", "v1.21.0"},
		{"/", "v1.21.0"},
	}
	for _, s := range seeds {
		f.Add(s.image, s.version)
	}
	f.Fuzz(func(t *testing.T, image, version string) {
		out, err := Normalize(image, version)
		if err != nil {
			if out != "" {
				t.Fatalf("Normalize(%q, %q) returned %q with error %v", image, version, out, err)
			}
			return
		}
		if !safeOutput.MatchString(out) {
			t.Fatalf("Normalize(%q, %q) = %q: not a safe reference", image, version, out)
		}
		if !strings.HasSuffix(out, ":"+version) {
			t.Fatalf("Normalize(%q, %q) = %q: does not end in the version", image, version, out)
		}
		again, err := Normalize(out, version)
		if err != nil || again != out {
			t.Fatalf("Normalize(%q, %q) = %q, but Normalize of that = %q, %v", image, version, out, again, err)
		}
	})
}

var safeVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[A-Za-z0-9_.-]+)?$`)

func FuzzValidateVersion(f *testing.F) {
	for _, s := range []string{
		"v1.21.0", "v1.21.0-beta.1", "", "v1", "v1.21.0 ", "v1.21.0\n", "v1.21.0;reboot",
		"v1.21.0-$(reboot)", "v1.21.0-`id`", "v1.21.0|sh", "v1.21.0&&x", "v1.٢.0", "v1.2.3-ü",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if err := ValidateVersion(v); err != nil {
			return
		}
		if !utf8.ValidString(v) || len(v) > MaxVersionLength || !safeVersion.MatchString(v) {
			t.Fatalf("ValidateVersion accepted unsafe %q", v)
		}
	})
}
