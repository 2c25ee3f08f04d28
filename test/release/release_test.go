//go:build release

// Package release checks what `make release` built (bin/release/<version>/,
// or $RELEASE_DIR): every file is in checksums.txt with its hash, each
// plugin archive holds a binary for its platform, the krew manifest points
// at the archives with their hashes, and krew (built from its Go module)
// installs the plugin from that manifest, which then plans a job against a
// real kube-apiserver. Run with `make test-release`.
package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/projectimage"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

func releaseDir(t *testing.T) (string, string) {
	t.Helper()
	ref, err := projectimage.Ref()
	if err != nil {
		t.Fatal(err)
	}
	version := ref[strings.LastIndexByte(ref, ':')+1:]
	dir := os.Getenv("RELEASE_DIR")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(), "bin", "release", version)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("no release in %s (run make release): %v", dir, err)
	}
	return dir, version
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type krewManifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version   string `json:"version"`
		Platforms []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

func TestReleaseArtifacts(t *testing.T) {
	dir, version := releaseDir(t)

	// checksums.txt lists every other file, with its hash.
	sums := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("checksums.txt: bad line %q", sc.Text())
		}
		sums[name] = sum
	}
	f.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "checksums.txt" {
			continue
		}
		if got := sha256File(t, filepath.Join(dir, e.Name())); sums[e.Name()] != got {
			t.Errorf("checksums.txt says %s is %q, it is %s", e.Name(), sums[e.Name()], got)
		}
		delete(sums, e.Name())
	}
	for name := range sums {
		t.Errorf("checksums.txt lists %s, which is not in the release", name)
	}

	// The krew manifest: six platforms, each an archive of the release
	// with its hash, holding a binary for that platform.
	raw, err := os.ReadFile(filepath.Join(dir, "nodeupgrade.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m krewManifest
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != "Plugin" || m.Metadata.Name != "nodeupgrade" || m.Spec.Version != version {
		t.Errorf("krew manifest: kind %q name %q version %q", m.Kind, m.Metadata.Name, m.Spec.Version)
	}
	want := map[string]bool{}
	for _, os := range []string{"linux", "darwin", "windows"} {
		for _, arch := range []string{"amd64", "arm64"} {
			want[os+"/"+arch] = true
		}
	}
	for _, p := range m.Spec.Platforms {
		goos, goarch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		delete(want, goos+"/"+goarch)
		archive := filepath.Join(dir, filepath.Base(p.URI))
		if got := sha256File(t, archive); got != p.SHA256 {
			t.Errorf("%s: manifest sha256 %s, archive %s", p.URI, p.SHA256, got)
		}
		checkBinary(t, archive, p.Bin, goos, goarch)
	}
	for p := range want {
		t.Errorf("no plugin for %s in the krew manifest", p)
	}

	// The image index, the chart, the CRD and the install YAML.
	_, platforms, err := imagebuild.ReadOCIIndex(filepath.Join(dir, "nodeupgrade-image-"+version+".oci.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(platforms) != len(projectimage.Platforms) {
		t.Errorf("image platforms %v, want %v", platforms, projectimage.Platforms)
	}
	crd, err := os.ReadFile(filepath.Join(dir, "nodeupgrade-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	original, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "operations.kubeedge.io_nodeupgradejobs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(crd, original) {
		t.Error("nodeupgrade-crd.yaml is not config/crd/bases' CRD")
	}
	install, err := os.ReadFile(filepath.Join(dir, "nodeupgrade-install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"CustomResourceDefinition", "Namespace", "Deployment", "ClusterRole"} {
		if !strings.Contains(string(install), "kind: "+kind+"\n") {
			t.Errorf("nodeupgrade-install.yaml has no %s", kind)
		}
	}
	helm, err := testenv.Helm()
	if err != nil {
		t.Fatal(err)
	}
	charts, _ := filepath.Glob(filepath.Join(dir, "nodeupgrade-*.tgz"))
	if len(charts) != 1 {
		t.Fatalf("want one chart package, got %v", charts)
	}
	out, err := exec.Command(helm, "show", "chart", charts[0]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "appVersion: "+version) {
		t.Errorf("helm show chart %s: %v\n%s", charts[0], err, out)
	}
}

// checkBinary reads the archive's one file, bin, and checks it is an
// executable for goos/goarch.
func checkBinary(t *testing.T, archive, bin, goos, goarch string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", archive, err)
	}
	tr := tar.NewReader(gz)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatalf("%s: %v", archive, err)
	}
	if hdr.Name != bin || hdr.Mode&0o111 == 0 {
		t.Errorf("%s holds %s (mode %o), want executable %s", archive, hdr.Name, hdr.Mode, bin)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("%s holds more than %s", archive, bin)
	}
	r := bytes.NewReader(data)
	var arch string
	switch goos {
	case "linux":
		e, err := elf.NewFile(r)
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		arch = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[e.Machine]
	case "darwin":
		m, err := macho.NewFile(r)
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		arch = map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[m.Cpu]
	case "windows":
		p, err := pe.NewFile(r)
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		arch = map[uint16]string{pe.IMAGE_FILE_MACHINE_AMD64: "amd64", pe.IMAGE_FILE_MACHINE_ARM64: "arm64"}[p.Machine]
	}
	if arch != goarch {
		t.Errorf("%s: a %s binary for %q, want %s", archive, goos, arch, goarch)
	}
}

// TestKrewInstallsThePlugin installs the plugin as a user of krew would,
// from the release's manifest (and its linux/amd64 archive, as krew would
// download it), and runs it through kubectl against a real kube-apiserver.
func TestKrewInstallsThePlugin(t *testing.T) {
	dir, version := releaseDir(t)
	krew, err := testenv.Krew()
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl not on PATH")
	}
	home := t.TempDir()
	krewRoot := filepath.Join(home, "krew")
	env := append(os.Environ(), "KREW_ROOT="+krewRoot, "HOME="+home, "PATH="+filepath.Join(krewRoot, "bin")+":"+os.Getenv("PATH"))
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = env
		cmd.Dir = testenv.RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	archive := filepath.Join(dir, "kubectl-nodeupgrade_"+version+"_linux_amd64.tar.gz")
	t.Log(run(krew, "install", "--manifest="+filepath.Join(dir, "nodeupgrade.yaml"), "--archive="+archive))

	// krew list and info need a plugin index, which krew update clones from
	// GitHub. A custom index is a git repository of manifests under
	// plugins/: one holding the release's manifest stands in, and krew
	// reads and validates the manifest from it as it would from an index.
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git not on PATH (krew clones its indexes with it)")
	}
	index := filepath.Join(home, "index")
	manifest, err := os.ReadFile(filepath.Join(dir, "nodeupgrade.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(index, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(index, "plugins", "nodeupgrade.yaml"), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	run(git, "-C", index, "init", "-q")
	run(git, "-C", index, "add", ".")
	run(git, "-C", index, "-c", "user.name=release-test", "-c", "user.email=release-test@localhost", "commit", "-q", "-m", "nodeupgrade "+version)
	run(krew, "index", "add", "local", index)
	// Not on a terminal, krew list prints names alone; one installed from a
	// manifest is krew's "detached" index's.
	if out := run(krew, "list"); !regexp.MustCompile(`(?m)^detached/nodeupgrade$`).MatchString(out) {
		t.Errorf("krew list does not show the plugin installed from the manifest:\n%s", out)
	}
	if out := run(krew, "info", "local/nodeupgrade"); !strings.Contains(out, "VERSION: "+version) || !strings.Contains(out, "kubectl-nodeupgrade_"+version+"_linux_amd64.tar.gz") {
		t.Errorf("krew info does not show the release's version and linux/amd64 archive:\n%s", out)
	}

	// kubectl finds it on PATH, as krew's users have it.
	env2, err := startAPIServer(t, home)
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, env2...)
	out := run(kubectl, "nodeupgrade", "plan", "-f", filepath.Join("config", "samples", "upgrade_by_names.yaml"))
	for _, want := range []string{"Plan for NodeUpgradeJob upgrade-edge-nodes-01-03", "skipped: node not found"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl nodeupgrade plan, installed by krew, does not say %q:\n%s", want, out)
		}
	}
	t.Logf("kubectl nodeupgrade plan (installed by krew):\n%s", out)
}

// startAPIServer starts envtest's etcd and kube-apiserver with the CRD and
// returns the environment that points kubectl at it as an admin.
func startAPIServer(t *testing.T, dir string) ([]string, error) {
	env, err := testenv.New()
	if err != nil {
		return nil, err
	}
	if _, err := env.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	return []string{"KUBECONFIG=" + path}, nil
}
