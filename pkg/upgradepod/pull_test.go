package upgradepod

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// The messages are containerd 1.6.20's (Debian bookworm's, the world's
// nodes') through edgecore v1.22.0's kubelet, for a registry:2
// (docker-registry 2.8.2), as TestRegistry's nodes logged them; msgNoAuthHead
// and msgHubDenied are other registries' forms of a refusal.
const (
	pkgRef = "docker.io/kubeedge/installation-package:v1.21.0"
	// runnerRef is baseParams' runner image.
	runnerRef     = "ghcr.io/nodeupgrade/nodeupgrade-runner:v0.1.0"
	msgNotFound   = `rpc error: code = NotFound desc = failed to pull and unpack image "` + pkgRef + `": failed to resolve reference "` + pkgRef + `": ` + pkgRef + `: not found`
	msgNoAuth     = `rpc error: code = Unknown desc = failed to pull and unpack image "` + pkgRef + `": failed to resolve reference "` + pkgRef + `": pulling from host docker.io failed with status code [manifests v1.21.0]: 401 Unauthorized`
	msgNoAuthHead = `rpc error: code = Unknown desc = failed to pull and unpack image "` + pkgRef + `": failed to resolve reference "` + pkgRef + `": unexpected status from HEAD request to https://10.251.7.1:5000/v2/kubeedge/installation-package/manifests/v1.21.0: 401 Unauthorized`
	msgHubDenied  = `rpc error: code = Unknown desc = failed to pull and unpack image "` + pkgRef + `": failed to resolve reference "` + pkgRef + `": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed`
	msgDown       = `rpc error: code = Unknown desc = failed to pull and unpack image "` + pkgRef + `": failed to resolve reference "` + pkgRef + `": failed to do request: Head "https://10.251.7.1:5000/v2/kubeedge/installation-package/manifests/v1.21.0": dial tcp 10.251.7.1:5000: connect: connection refused`
	msgPlatform   = `rpc error: code = NotFound desc = failed to pull and unpack image "` + runnerRef + `": no match for platform in manifest: not found`
	msgNoDNS      = `rpc error: code = Unknown desc = failed to pull and unpack image "` + pkgRef + `": failed to resolve reference "` + pkgRef + `": failed to do request: Head "https://registry-1.docker.io/v2/kubeedge/installation-package/manifests/v1.21.0": dial tcp: lookup registry-1.docker.io on 10.251.7.1:53: no such host`
)

// A waiting container's pull: refused (fails the node at once), retrying
// or backing off (the node waits), each with the registry's words.
func TestPullState(t *testing.T) {
	copyKeadm := func(state corev1.ContainerState) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{cs(runner.ContainerCopyKeadm, state)}}
	}
	copied := []corev1.ContainerStatus{cs(runner.ContainerCopyKeadm, exited(0, ""))}
	for _, tc := range []struct {
		name       string
		status     corev1.PodStatus
		wantPull   rollout.PullState
		wantPhase  rollout.PodPhase
		wantReason string // exact
	}{
		{"no such tag", copyKeadm(waiting("ErrImagePull", msgNotFound)), rollout.PullRefused, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": not found"},
		{"no or a wrong credential", copyKeadm(waiting("ErrImagePull", msgNoAuth)), rollout.PullRefused, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": 401 Unauthorized"},
		{"no credential, another form", copyKeadm(waiting("ErrImagePull", msgNoAuthHead)), rollout.PullRefused, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": unexpected status from HEAD request to https://10.251.7.1:5000/v2/kubeedge/installation-package/manifests/v1.21.0: 401 Unauthorized"},
		{"Docker Hub's denial", copyKeadm(waiting("ErrImagePull", msgHubDenied)), rollout.PullRefused, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"},
		{"registry down", copyKeadm(waiting("ErrImagePull", msgDown)), rollout.PullRetrying, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": dial tcp 10.251.7.1:5000: connect: connection refused"},
		{"no network (the issue's node)", copyKeadm(waiting("ErrImagePull", msgNoDNS)), rollout.PullRetrying, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": dial tcp: lookup registry-1.docker.io on 10.251.7.1:53: no such host"},
		{"back-off, Kubernetes 1.31 and older: no cause", copyKeadm(waiting("ImagePullBackOff", `Back-off pulling image "`+pkgRef+`"`)), rollout.PullBackOff, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + `: back-off (Back-off pulling image "` + pkgRef + `")`},
		{"back-off, Kubernetes 1.32: the refusal before it", copyKeadm(waiting("ImagePullBackOff", `Back-off pulling image "`+pkgRef+`": ErrImagePull: `+msgNotFound)), rollout.PullRefused, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": not found"},
		{"back-off, Kubernetes 1.32: a passing error before it", copyKeadm(waiting("ImagePullBackOff", `Back-off pulling image "`+pkgRef+`": ErrImagePull: `+msgDown)), rollout.PullRetrying, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + ": dial tcp 10.251.7.1:5000: connect: connection refused"},
		{"invalid name", copyKeadm(waiting("InvalidImageName", `Failed to apply default image tag "x": couldn't parse image name`)), rollout.PullRefused, rollout.PodPending,
			"copy-keadm: cannot pull " + pkgRef + `: Failed to apply default image tag "x": couldn't parse image name`},
		{"the runner image has no arm64 in its index", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: copied,
			ContainerStatuses: steps(waiting("ErrImagePull", msgPlatform), waiting("ErrImagePull", msgPlatform), waiting("ErrImagePull", msgPlatform))},
			rollout.PullRefused, rollout.PodChecking, "check: cannot pull " + runnerRef + ": no match for platform in manifest: not found"},
		{"a refusal after a step ran does not fail fast", corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: copied,
			ContainerStatuses: steps(exited(0, "{}"), waiting("ErrImagePull", msgNotFound), running())},
			rollout.PullOK, rollout.PodBackingUp, "backup: cannot pull " + runnerRef + ": " + pkgRef + ": not found"},
		{"creating is no pull", copyKeadm(waiting("PodInitializing", "")), rollout.PullOK, rollout.PodPending, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			view := View(testPod(true, tc.status))
			g.Expect(view.Pull).To(Equal(tc.wantPull))
			g.Expect(view.Phase).To(Equal(tc.wantPhase))
			g.Expect(view.Reason).To(Equal(tc.wantReason))
			g.Expect(len(view.Reason)).To(BeNumerically("<=", 256-len("image pull refused, nothing on the node changed: ")), "fits a node's reason with the planner's prefix")
		})
	}
}
