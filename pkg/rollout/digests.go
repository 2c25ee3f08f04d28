package rollout

import (
	"fmt"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// ApplyResolvedDigests adds the digests a registry served for the install
// image (status.resolvedImageDigests, read through registryAPI) to those
// the spec gives. An architecture the spec pins keeps the spec's digest,
// and a registry that serves another one for it (or none) stops its nodes
// before anything on them changes, with both digests in the reason
// (DigestMismatch): the tag moved, or the spec names another image.
// v1alpha1's value, which pins every architecture, must be the digest the
// tag names or one of its images'.
func (c *Config) ApplyResolvedDigests(r *v1alpha1.ResolvedImageDigests) {
	if r == nil {
		return
	}
	digests := map[string]string{}
	for arch, d := range c.ImageDigests {
		digests[arch] = d
	}
	mismatch := map[string]string{}
	resolved := map[string]string{"amd64": r.AMD64, "arm64": r.ARM64}
	if value := digests[""]; value != "" && value != r.Tag && value != r.AMD64 && value != r.ARM64 {
		mismatch[""] = fmt.Sprintf("spec.imageDigestGatter.value is %s, but the registry serves %s for %s (amd64 %s, arm64 %s)",
			value, r.Tag, r.Image, orNone(r.AMD64), orNone(r.ARM64))
	}
	for arch, served := range resolved {
		pinned := digests[arch]
		switch {
		case pinned != "" && pinned != served:
			mismatch[arch] = fmt.Sprintf("spec.imageDigestGatter.%s is %s, but the registry serves %s for %s on linux/%s",
				arch, pinned, orNone(served), r.Image, arch)
		case pinned == "" && served != "" && mismatch[""] == "":
			// Unpinned, or pinned by a value the registry confirms: the
			// architecture's own image, which its nodes would pick anyway.
			digests[arch] = served
		}
	}
	c.ImageDigests = digests
	if len(mismatch) > 0 {
		c.DigestMismatch = mismatch
	}
}

func orNone(digest string) string {
	if digest == "" {
		return "no image"
	}
	return digest
}

// pinnedDigest is the digest a node of architecture arch pulls the install
// image by ("" when the job pins none), or why it cannot start on the
// job's pinned digests: a digest the registry contradicts, or none for its
// architecture. Staging and dispatch both ask it, so a node is staged by
// the very digest it will be upgraded with.
func (c Config) pinnedDigest(arch string) (digest, refusal string) {
	if why := c.DigestMismatch[arch]; why != "" {
		return "", "nothing was run: " + why
	}
	digest, ok := c.DigestFor(arch)
	if !ok {
		return "", noDigestFor(arch, c.ImageDigests)
	}
	if c.ImageDigests[arch] == "" {
		if why := c.DigestMismatch[""]; why != "" {
			return "", "nothing was run: " + why
		}
	}
	return digest, ""
}
