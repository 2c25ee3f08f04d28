package projectimage

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// finalStage is the Dockerfile's last stage: what it says about the image.
type finalStage struct {
	from       string
	user       string
	entrypoint []string
	env        []string
	files      map[string]bool // COPY destinations and ln -s targets
	// platforms are the header's `docker buildx build --platform` list.
	platforms []string
}

func readDockerfile(t *testing.T) finalStage {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st finalStage
	var platforms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if _, build, ok := strings.Cut(line, "docker buildx build --platform "); ok && strings.HasPrefix(line, "#") {
			list, _, _ := strings.Cut(build, " ")
			platforms = strings.Split(list, ",")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			st = finalStage{from: rest, files: map[string]bool{}}
		case "USER":
			st.user = rest
		case "ENV":
			st.env = append(st.env, rest)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &st.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT is not an exec form: %v", err)
			}
		case "COPY":
			f := strings.Fields(rest)
			st.files[f[len(f)-1]] = true
		case "RUN":
			var argv []string
			if json.Unmarshal([]byte(rest), &argv) == nil && len(argv) == 5 && argv[1] == "ln" && argv[2] == "-s" {
				st.files[argv[4]] = true
			}
		}
	}
	st.platforms = platforms
	return st
}

// The Dockerfile and `make image` describe the same image: base, user,
// entrypoint, PATH and files; and the Deployment runs what both put there.
func TestDockerfileMatchesImageSpec(t *testing.T) {
	g := NewWithT(t)
	df := readDockerfile(t)
	if _, err := os.Stat(imagebuild.BusyboxPath); err != nil {
		t.Skipf("no %s (busybox-static) on this machine: %v", imagebuild.BusyboxPath, err)
	}
	// Every platform's busybox stands in for itself: the test compares
	// paths and settings, not contents.
	idx, err := Spec(Repository+":test", filepath.Join(testenv.RepoRoot(), "bin"), func(imagebuild.Platform) Binaries { return Binaries{"/dev/null", "/dev/null"} })
	if err != nil && strings.Contains(err.Error(), "hack/kubeedge-deps.sh image") {
		t.Skipf("the other platforms' busybox-static is not fetched: %v", err)
	}
	g.Expect(err).NotTo(HaveOccurred())

	// The same platforms, in the same order.
	var platforms []string
	for _, img := range idx.Images {
		platforms = append(platforms, img.Platform.String())
	}
	g.Expect(df.platforms).To(Equal(platforms), "the Dockerfile's buildx --platform list and make image's index")

	g.Expect(df.from).To(Equal("scratch"), "make image starts from an empty base too")
	spec := idx.Images[0]
	for _, img := range idx.Images {
		g.Expect(img.User).To(Equal(spec.User), img.Platform.String())
		g.Expect(img.Entrypoint).To(Equal(spec.Entrypoint), img.Platform.String())
		g.Expect(img.Entries).To(HaveLen(len(spec.Entries)), "every platform holds the same files: %s", img.Platform)
	}
	g.Expect(df.user).To(Equal(spec.User))
	g.Expect(df.entrypoint).To(Equal(spec.Entrypoint))
	// imagebuild's default PATH, which the runner's nsenter lookup needs.
	g.Expect(df.env).To(ConsistOf(imagebuild.DefaultPath))

	specFiles := map[string]bool{}
	for _, e := range spec.Entries {
		if e.Source != "" || e.Link != "" {
			specFiles[e.Path] = true
		}
	}
	for p := range df.files {
		g.Expect(specFiles).To(HaveKey(p), "the Dockerfile puts %s in the image; make image does not", p)
	}
	for _, p := range []string{ControllerPath, RunnerPath, imagebuild.BusyboxPath, NsenterPath} {
		g.Expect(df.files).To(HaveKey(p), "make image puts %s in the image; the Dockerfile does not", p)
	}

	// config/manager runs the controller from the image's path, as the
	// image's user.
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "manager", "manager.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name    string   `json:"name"`
						Command []string `json:"command"`
					} `json:"containers"`
					SecurityContext struct {
						RunAsUser  int64 `json:"runAsUser"`
						RunAsGroup int64 `json:"runAsGroup"`
					} `json:"securityContext"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	g.Expect(yaml.Unmarshal(data, &d)).To(Succeed())
	g.Expect(d.Spec.Template.Spec.Containers[0].Command).To(Equal([]string{ControllerPath}))
	g.Expect(d.Spec.Template.Spec.SecurityContext).To(And(HaveField("RunAsUser", int64(65532)), HaveField("RunAsGroup", int64(65532))))
}

func TestRefIsTheDeployedTag(t *testing.T) {
	g := NewWithT(t)
	ref, err := Ref()
	g.Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "manager", "manager.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).To(ContainSubstring("image: "+ref), "config/manager's kustomization and Deployment name the same image")
}

// The controller knows its version, so its runner image defaults to its
// own image: make build, the Dockerfile and make image all link the tag
// config/manager deploys into pkg/manager.Version, and a binary linked so
// offers that image as --runner-image's default.
func TestVersionIsLinkedIn(t *testing.T) {
	g := NewWithT(t)
	ref, err := Ref()
	g.Expect(err).NotTo(HaveOccurred())
	tag := ref[strings.LastIndexByte(ref, ':')+1:]
	linked := "-X " + manager.VersionVariable + "="

	out, err := exec.Command("make", "-s", "-n", "-C", testenv.RepoRoot(), "build").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", out)
	g.Expect(string(out)).To(ContainSubstring(linked+tag+"'"), "make build links the deployed tag")

	df, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(df)).To(ContainSubstring("\nARG VERSION="+tag+"\n"), "the Dockerfile's default VERSION is the deployed tag")
	g.Expect(string(df)).To(ContainSubstring(linked + "${VERSION}"))

	bin := filepath.Join(t.TempDir(), "nodeupgrade-controller")
	build := exec.Command("go", "build", "-ldflags="+LDFlags(ref), "-o", bin, "./cmd/nodeupgrade-controller")
	build.Dir = testenv.RepoRoot()
	out, err = build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", out)
	usage, _ := exec.Command(bin, "-help").CombinedOutput()
	flagHelp := regexp.MustCompile(`-runner-image string\n[^\n]*`).FindString(string(usage))
	g.Expect(flagHelp).To(HaveSuffix(`(default "` + ref + `")`))
}
