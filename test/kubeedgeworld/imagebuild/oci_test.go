package imagebuild

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func twoPlatforms(t *testing.T) Index {
	dir := t.TempDir()
	var images []Image
	for _, p := range []Platform{LinuxAMD64, LinuxARM64, LinuxARMv7} {
		f := filepath.Join(dir, platformName(p))
		if err := os.WriteFile(f, []byte("binary for "+p.String()), 0o755); err != nil {
			t.Fatal(err)
		}
		images = append(images, Image{Platform: p, Entries: []Entry{{Path: "/usr/local/bin/tool", Source: f}}, Entrypoint: []string{"/usr/local/bin/tool"}, User: "65532:65532"})
	}
	return Index{Ref: "registry.test:5000/project/tool:v1", Images: images}
}

func platformName(p Platform) string { return p.OS + "-" + p.Architecture + p.Variant }

// WriteOCI writes one index naming each platform's manifest, under the
// reference containerd imports it by.
func TestWriteOCI(t *testing.T) {
	g := NewWithT(t)
	out := filepath.Join(t.TempDir(), "tool.oci.tar")
	idx := twoPlatforms(t)
	g.Expect(WriteOCI(out, idx)).To(Succeed())
	ref, platforms, err := ReadOCIIndex(out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ref).To(Equal(idx.Ref))
	g.Expect(platforms).To(Equal([]Platform{LinuxAMD64, LinuxARM64, LinuxARMv7}))

	g.Expect(WriteOCI(out, Index{Ref: "no-tag"})).To(MatchError(ContainSubstring("needs a tag")))
	g.Expect(WriteOCI(out, Index{Ref: "x:1", Images: []Image{{}}})).To(MatchError(ContainSubstring("has no platform")))
	g.Expect(WriteOCI(out, Index{Ref: "x:1", Images: []Image{{Platform: LinuxAMD64}, {Platform: LinuxAMD64}}})).To(MatchError(ContainSubstring("twice")))
}

// PushOCI puts the index into a real registry (Debian's docker-registry,
// distribution 2.8) with every platform, and the registry serves it back.
func TestPushOCIToRealRegistry(t *testing.T) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry not installed (hack/kubeedge-deps.sh packages)")
	}
	g := NewWithT(t)
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	addr := l.Addr().String()
	_ = l.Close()
	cfg := fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", dir, addr)
	g.Expect(os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600)).To(Succeed())
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	g.Expect(cmd.Start()).To(Succeed())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr
	g.Eventually(func() error {
		resp, err := http.Get(base + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())

	out := filepath.Join(t.TempDir(), "tool.oci.tar")
	g.Expect(WriteOCI(out, twoPlatforms(t))).To(Succeed())
	reg := Registry{Base: base, Client: http.DefaultClient}
	g.Expect(PushOCI(context.Background(), reg, out, "project/tool", "v1")).To(Succeed())
	g.Expect(PushOCI(context.Background(), reg, out, "project/tool", "v1")).To(Succeed(), "a second push finds the blobs there")

	req, _ := http.NewRequest(http.MethodGet, base+"/v2/project/tool/manifests/v1", nil)
	req.Header.Set("Accept", MediaTypeIndex)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal(MediaTypeIndex))
	var index ociIndex
	g.Expect(json.NewDecoder(resp.Body).Decode(&index)).To(Succeed())
	var got []string
	for _, m := range index.Manifests {
		got = append(got, m.Platform.String())
		req, _ := http.NewRequest(http.MethodGet, base+"/v2/project/tool/manifests/"+m.Digest, nil)
		req.Header.Set("Accept", MediaTypeManifest)
		r, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		r.Body.Close()
		g.Expect(r.StatusCode).To(Equal(http.StatusOK), "the %s manifest", m.Platform)
	}
	g.Expect(got).To(Equal([]string{"linux/amd64", "linux/arm64", "linux/arm/v7"}))
}
