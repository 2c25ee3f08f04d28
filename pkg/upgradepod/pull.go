package upgradepod

import (
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// The kubelet's waiting reasons for a container whose image is not there
// (k8s.io/kubernetes/pkg/kubelet/images).
const (
	reasonErrImagePull      = "ErrImagePull"
	reasonImagePullBackOff  = "ImagePullBackOff"
	reasonInvalidImageName  = "InvalidImageName"
	reasonErrImageNeverPull = "ErrImageNeverPull"
	reasonRegistryDown      = "RegistryUnavailable"
	reasonSignatureInvalid  = "SignatureValidationFailed"
	reasonErrImageInspect   = "ErrImageInspect"
)

// waiting records why container c waits: a pull, read by pullState (its
// state counts only before any step has started: only then has nothing on
// the node changed), or any other reason the kubelet gives.
func (obs *observation) waiting(c corev1.Container, s *corev1.ContainerStatus, beforeAnyStep bool) {
	state, reason := pullState(c, s)
	if state == rollout.PullOK {
		obs.Reason = waitingReason(c.Name, s)
		return
	}
	obs.Reason = reason
	if beforeAnyStep {
		obs.Pull = state
	}
}

// pullState reads a waiting container's status: whether its image pull
// failed, whether the failure can pass, and the container runtime's words
// for it, shortened to what a node's 256-byte reason can hold:
// "copy-keadm: cannot pull REF: not found".
//
// Measured on edgecore's kubelet with containerd 1.6 (docs/kubeedge.md):
// ErrImagePull carries containerd's error; ImagePullBackOff, between
// attempts, carries it only from KubeEdge v1.23's kubelet on (Kubernetes
// 1.32): v1.22 and older say only `Back-off pulling image "REF"`.
func pullState(c corev1.Container, s *corev1.ContainerStatus) (rollout.PullState, string) {
	if s == nil || s.State.Waiting == nil {
		return rollout.PullOK, ""
	}
	w := s.State.Waiting
	prefix := c.Name + ": cannot pull " + c.Image + ": "
	switch w.Reason {
	case reasonErrImagePull, reasonRegistryDown, reasonErrImageInspect:
		cause := pullCause(w.Message, c.Image)
		if w.Reason != reasonRegistryDown && pullRefused(w.Message) {
			return rollout.PullRefused, prefix + cause
		}
		return rollout.PullRetrying, prefix + cause
	case reasonImagePullBackOff:
		// Kubernetes 1.32+: `Back-off pulling image "REF": ErrImagePull: ERR`.
		if _, prev, ok := strings.Cut(w.Message, ": "+reasonErrImagePull+": "); ok {
			if pullRefused(prev) {
				return rollout.PullRefused, prefix + pullCause(prev, c.Image)
			}
			return rollout.PullRetrying, prefix + pullCause(prev, c.Image)
		}
		return rollout.PullBackOff, prefix + "back-off (" + firstNonEmpty(w.Message, w.Reason) + ")"
	case reasonInvalidImageName, reasonErrImageNeverPull, reasonSignatureInvalid:
		return rollout.PullRefused, prefix + firstNonEmpty(w.Message, w.Reason)
	}
	return rollout.PullOK, ""
}

// refusedPull matches the container runtime's words for an answer of the
// registry that waiting does not change: the tag, the repository or the
// platform is not there (containerd: "REF: not found", "no match for
// platform in manifest: not found"), or the node may not pull it (HTTP
// 401/403, "pull access denied", "insufficient_scope", a token refused).
var refusedPull = regexp.MustCompile(`(?i)(: not found\b|code = NotFound|manifest unknown|name unknown|\b401 Unauthorized|\b403 Forbidden|pull access denied|insufficient_scope|authorization failed|failed to authorize|unauthorized:|denied:)`)

func pullRefused(msg string) bool { return refusedPull.MatchString(msg) }

// causeWrappers are the layers containerd and CRI put around the registry's
// own words: `rpc error: code = X desc = `, `failed to pull and unpack image
// "REF": `, `failed to resolve reference "REF": `, `failed to do request:
// Head "URL": `, `pulling from host HOST failed with status code [manifests
// TAG]: ` (the image reference says what the URL, host and tag say).
var causeWrappers = regexp.MustCompile(`^(rpc error: code = \w+ desc = |failed to [a-z ]+ "[^"]*": |failed to do request: [A-Za-z]+ "[^"]*": |pulling from host \S+ failed with status code \[[^\]]*\]: )`)

// pullCause is msg without the wrappers around the registry's answer, and
// without the image's own name before it (containerd repeats it).
func pullCause(msg, image string) string {
	msg = strings.TrimSpace(msg)
	for {
		loc := causeWrappers.FindStringIndex(msg)
		if loc == nil {
			break
		}
		msg = msg[loc[1]:]
	}
	for _, ref := range []string{image, "docker.io/" + image, "docker.io/library/" + image} {
		msg = strings.TrimPrefix(msg, ref+": ")
	}
	return rollout.Truncate(msg, maxMessage)
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x = strings.TrimSpace(x); x != "" {
			return x
		}
	}
	return ""
}
