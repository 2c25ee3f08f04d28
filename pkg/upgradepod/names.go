package upgradepod

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

const podNamePrefix = "nodeupgrade-"

// PodName is the deterministic name of the upgrade pod of one job on one
// node: "nodeupgrade-<8 hex of sha256(jobUID)>-<node>". Deterministic, so a
// controller that lost track of a pod finds it again (and cannot create a
// second one). A node name too long to fit is cut and suffixed with a hash of
// the full name, keeping the result a DNS subdomain of at most 253 bytes.
func PodName(jobUID, nodeName string) string {
	prefix := podNamePrefix + shortHash(jobUID, 8) + "-"
	if len(validation.IsDNS1123Subdomain(nodeName)) != 0 {
		// Not a node name the API server would accept; hash it rather
		// than risk an invalid pod name.
		return prefix + shortHash(nodeName, 16)
	}
	if len(prefix)+len(nodeName) <= validation.DNS1123SubdomainMaxLength {
		return prefix + nodeName
	}
	suffix := "-" + shortHash(nodeName, 16)
	keep := cutValid(nodeName, validation.DNS1123SubdomainMaxLength-len(prefix)-len(suffix), isDNSChar)
	return prefix + keep + suffix
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
