package upgradepod

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

const podNamePrefix = "nodeupgrade-"

// PodName is the name of a node's upgrade pod, whichever job it belongs to:
// "nodeupgrade-<node>". It names the node alone, so the API server itself
// keeps one upgrade pod per node: a second job's create is refused with
// AlreadyExists however stale the cache it planned from (two jobs created
// in the same instant both passed a cache-based check). A job finds its own
// pods by their controller owner reference (Owns), not by name. A node name
// too long to fit is cut and suffixed with a hash of the full name, keeping
// the result a DNS subdomain of at most 253 bytes; a name that is no DNS
// subdomain is hashed.
func PodName(nodeName string) string {
	return podNamePrefix + nameFor(nodeName, validation.DNS1123SubdomainMaxLength-len(podNamePrefix))
}

// LegacyPodName is the name an upgrade pod of one job on one node had
// before pods were named after the node alone:
// "nodeupgrade-<8 hex of sha256(jobUID)>-<node>". A controller upgraded in
// the middle of a rollout finds such pods; they are still their job's own
// (Owns), and still keep the node busy for every other job (MarkBusy).
func LegacyPodName(jobUID, nodeName string) string {
	prefix := podNamePrefix + shortHash(jobUID, 8) + "-"
	return prefix + nameFor(nodeName, validation.DNS1123SubdomainMaxLength-len(prefix))
}

// nameFor is nodeName as the end of a pod name of at most room bytes.
func nameFor(nodeName string, room int) string {
	if len(validation.IsDNS1123Subdomain(nodeName)) != 0 {
		// Not a node name the API server would accept; hash it rather
		// than risk an invalid pod name.
		return shortHash(nodeName, 16)
	}
	if len(nodeName) <= room {
		return nodeName
	}
	suffix := "-" + shortHash(nodeName, 16)
	return cutValid(nodeName, room-len(suffix), isDNSChar) + suffix
}

// Owns reports whether pod is the upgrade pod of the job with jobUID: its
// controller owner reference names the job, or it has the job's legacy
// name (LegacyPodName), from before pods were named after the node. A pod
// of a deleted and re-created job of the same name is not the new job's.
func Owns(jobUID string, pod *corev1.Pod) bool {
	if jobUID == "" || pod == nil {
		return false
	}
	if ref := metav1.GetControllerOf(pod); ref != nil && string(ref.UID) == jobUID {
		return true
	}
	node := pod.Annotations[v1alpha1.AnnotationNode]
	return node != "" && pod.Name == LegacyPodName(jobUID, node)
}

// NodeLabelValue is nodeName when it is a valid label value (at most 63
// characters), otherwise a stable shortened form "<start>-<hash>". The full
// name is always in the AnnotationNode annotation.
func NodeLabelValue(nodeName string) string {
	return labelValue(nodeName)
}

// JobLabelValue is the LabelJob value for a job name, shortened like
// NodeLabelValue when the name is longer than a label value may be.
func JobLabelValue(jobName string) string {
	return labelValue(jobName)
}

func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	suffix := shortHash(s, 16)
	keep := cutValid(s, validation.LabelValueMaxLength-len(suffix)-1, isLabelChar)
	if keep == "" {
		return suffix
	}
	return keep + "-" + suffix
}

// cutValid keeps the longest prefix of s, at most n bytes, made of chars ok
// accepts, then trims it so it starts and ends with an alphanumeric.
func cutValid(s string, n int, ok func(byte) bool) string {
	i := 0
	for i < len(s) && i < n && ok(s[i]) {
		i++
	}
	return strings.TrimFunc(s[:i], func(r rune) bool { return !isAlnum(byte(r)) })
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDNSChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.'
}

func isLabelChar(c byte) bool {
	return isAlnum(c) || c == '-' || c == '_' || c == '.'
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}
