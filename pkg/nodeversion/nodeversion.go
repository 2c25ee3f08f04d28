// Package nodeversion reads the edgecore version a KubeEdge node reports and
// compares versions. A KubeEdge node reports status.nodeInfo.kubeletVersion
// as "<kubernetes version>-kubeedge-<edgecore version>".
package nodeversion

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
)

const kubeEdgeMarker = "-kubeedge-"

// Edgecore returns the edgecore version in a kubeletVersion string such as
// "v1.30.7-kubeedge-v1.21.0", and false when the string carries none. Only
// a version of the grammar the CRD and the runner accept
// (imageref.ValidateVersion) is read: the value goes on to the runner's
// --from-version and into status, so "v1.21.0 x;y" reads as no version at
// all rather than as "v1.21.0 x;y".
func Edgecore(kubeletVersion string) (string, bool) {
	i := strings.LastIndex(kubeletVersion, kubeEdgeMarker)
	if i < 0 {
		return "", false
	}
	v := kubeletVersion[i+len(kubeEdgeMarker):]
	if imageref.ValidateVersion(v) != nil {
		return "", false
	}
	if _, err := parse(v); err != nil {
		return "", false
	}
	return v, true
}

// AtLeast reports whether have is the same version as want or newer. A version
// that cannot be parsed is never at least anything, so a node that lies about
// its version is upgraded (or fails verification) rather than skipped.
func AtLeast(have, want string) bool {
	h, err := parse(have)
	if err != nil {
		return false
	}
	w, err := parse(want)
	if err != nil {
		return false
	}
	return h.AtLeast(w)
}

// parse reads semantic versions ("v1.21.0-beta.1") and falls back to generic
// ones so KubeEdge suffixes that semver refuses ("v1.21.0-rc_1") still compare
// by their numbers.
func parse(v string) (*version.Version, error) {
	if parsed, err := version.ParseSemantic(v); err == nil {
		return parsed, nil
	}
	return version.ParseGeneric(v)
}
