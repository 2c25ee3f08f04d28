package imageref

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

const (
	// DefaultImage is used when a job names no image. The CRD applies the
	// same default on create (its +kubebuilder:default marker on
	// spec.image); api/v1alpha1's grammar test keeps the two equal.
	DefaultImage = "kubeedge/installation-package"
	// DefaultRegistry is the registry host of an image that names none.
	DefaultRegistry = "docker.io"

	// MaxVersionLength is the CRD's limit on spec.version and also the
	// registry limit on a tag (128), so every valid version is a valid tag.
	MaxVersionLength = 128
	// MaxImageLength bounds the input, matching the CRD's spec.image limit.
	MaxImageLength = 255
	// MaxRepositoryLength is the distribution spec's limit on a full name.
	MaxRepositoryLength = 255

	// VersionPattern is the grammar of spec.version, the CRD's Pattern
	// marker on it (markers cannot name a Go constant: api/v1alpha1's
	// grammar test checks the generated CRD holds this very pattern and
	// that both accept the same inputs). Go's \d is ASCII-only, so no
	// exotic digits get through.
	VersionPattern = `^v\d+\.\d+\.\d+(-[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*)?$`
)

var (
	versionRE = regexp.MustCompile(VersionPattern)

	// hostRE is one registry host: DNS labels separated by dots, optional
	// port. IPv6 literals are refused: nobody should need one here and the
	// brackets complicate every consumer.
	hostRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$`)
	// componentRE is one path component of the distribution reference grammar.
	componentRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	// tagRE is the distribution reference tag grammar.
	tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// digestRE is the CRD's digest grammar: sha256, in lower-case hex, the
	// only digest registries hand out. The distribution grammar allows any
	// algorithm and case; one grammar on both sides means the API server and
	// the controller never disagree on an image (api/v1alpha1's grammar test).
	digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// ValidateVersion reports whether v is an acceptable edgecore version such as
// v1.21.0 or v1.21.0-beta.1, using the same rule as the CRD.
func ValidateVersion(v string) error {
	if v == "" {
		return errors.New("version is empty")
	}
	if len(v) > MaxVersionLength {
		return fmt.Errorf("version is %d characters long, the maximum is %d", len(v), MaxVersionLength)
	}
	if !versionRE.MatchString(v) {
		return fmt.Errorf("version %q is not of the form vMAJOR.MINOR.PATCH[-suffix]", v)
	}
	return nil
}

// Normalize returns the fully qualified install image for version: image's
// repository (see Repository) with any tag or digest replaced by ":"+version.
// An empty image means DefaultImage.
func Normalize(image, version string) (string, error) {
	if err := ValidateVersion(version); err != nil {
		return "", fmt.Errorf("invalid version: %w", err)
	}
	repo, err := Repository(image)
	if err != nil {
		return "", err
	}
	// The normalised reference is what the runner gets and checks again, so
	// it must fit the same bound as the input: Repository bounds the
	// repository, and the tag can take it past (found by FuzzNormalize).
	out := repo + ":" + version
	if len(out) > MaxImageLength {
		return "", fmt.Errorf("image %q becomes %d characters long once normalised (%s…:%s), the maximum is %d",
			image, len(out), out[:min(len(out), 40)], version, MaxImageLength)
	}
	return out, nil
}

// Repository returns image's normalised repository, without tag or digest:
// the registry host defaults to docker.io, and a single-component Docker Hub
// name gains the library/ prefix, as docker itself does. An empty image means
// DefaultImage. Anything outside the distribution reference grammar (spaces,
// control characters, shell metacharacters, uppercase in the path, empty
// components) is refused.
func Repository(image string) (string, error) {
	if image == "" {
		image = DefaultImage
	}
	if len(image) > MaxImageLength {
		return "", fmt.Errorf("image is %d characters long, the maximum is %d", len(image), MaxImageLength)
	}
	// Catch the dangerous characters first so the error says what is wrong
	// rather than a generic grammar mismatch.
	if i := strings.IndexFunc(image, unsafeRune); i >= 0 {
		return "", fmt.Errorf("image %q contains a forbidden character %q at byte %d", image, []rune(image[i:])[0], i)
	}

	name := image
	if at := strings.IndexByte(name, '@'); at >= 0 {
		digest := name[at+1:]
		name = name[:at]
		// The digest is dropped, but a malformed one means the user typed
		// something other than what they think: say so.
		if !digestRE.MatchString(digest) {
			return "", fmt.Errorf("image %q has a malformed digest %q", image, digest)
		}
	}
	// A tag is a colon after the last slash; a colon before it is a port.
	if colon := strings.LastIndexByte(name, ':'); colon > strings.LastIndexByte(name, '/') {
		tag := name[colon+1:]
		name = name[:colon]
		if !tagRE.MatchString(tag) {
			return "", fmt.Errorf("image %q has a malformed tag %q", image, tag)
		}
	}
	if name == "" {
		return "", fmt.Errorf("image %q has no repository name", image)
	}

	host, path := splitHost(name)
	if host == "" {
		host = DefaultRegistry
	} else if !hostRE.MatchString(host) {
		return "", fmt.Errorf("image %q has an invalid registry host %q", image, host)
	}
	if strings.ContainsAny(host, ".:") || strings.EqualFold(host, "localhost") {
		// Registry hosts are DNS names, so case does not matter, and
		// Docker.io/kubeedge/x is docker.io/kubeedge/x. A dotless host is
		// kept as written: lowercased it would read as a Docker Hub path.
		host = strings.ToLower(host)
	}
	if host == "index.docker.io" {
		// docker treats the legacy index host as docker.io; doing the same
		// keeps allow-lists from having to list both.
		host = DefaultRegistry
	}
	if path == "" {
		return "", fmt.Errorf("image %q has no repository path after the registry host", image)
	}
	components := strings.Split(path, "/")
	for _, c := range components {
		if c == "" {
			return "", fmt.Errorf("image %q has an empty path component", image)
		}
		if !componentRE.MatchString(c) {
			if strings.ToLower(c) != c {
				return "", fmt.Errorf("image %q: repository path component %q must be lowercase", image, c)
			}
			return "", fmt.Errorf("image %q: repository path component %q must be lowercase letters and digits separated by '.', '_', '__' or '-'", image, c)
		}
	}
	if host == DefaultRegistry && len(components) == 1 {
		path = "library/" + path
	}
	repo := host + "/" + path
	if len(repo) > MaxRepositoryLength {
		return "", fmt.Errorf("repository %q is %d characters long, the maximum is %d", repo, len(repo), MaxRepositoryLength)
	}
	return repo, nil
}

// splitHost splits name into registry host and path with docker's rule: the
// first component is a host when there is more than one component and it
// contains '.' or ':', is "localhost", or has an uppercase letter (which a
// path component may not have).
func splitHost(name string) (host, path string) {
	slash := strings.IndexByte(name, '/')
	if slash < 0 {
		return "", name
	}
	first := name[:slash]
	if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
		return first, name[slash+1:]
	}
	return "", name
}

// unsafeRune is true for anything that can never appear in an image
// reference: all non-ASCII, whitespace, control and shell metacharacters.
func unsafeRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	switch r {
	case '.', '-', '_', '/', ':', '@', '+':
		return false
	}
	return true
}

// NormalizeAllowList normalises the entries of a repository allow-list the
// way job images are normalised (Repository), so that an entry matches
// whichever way it is written: "kubeedge/" is "docker.io/kubeedge/",
// "index.docker.io/kubeedge/" and "Docker.io/kubeedge/" too. Entries ending
// in "/" stay prefixes. Empty entries are dropped; an entry that is no
// repository or prefix is an error, so a typo in the controller's flags
// stops it at startup instead of refusing every job.
func NormalizeAllowList(entries []string) ([]string, error) {
	out := make([]string, 0, len(entries))
	for _, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if prefix, ok := strings.CutSuffix(entry, "/"); ok {
			// Normalised through a two-component placeholder, so that a
			// registry alone ("docker.io/") gains no library/ and a Docker
			// Hub namespace ("kubeedge/") gains docker.io.
			const placeholder = "/p/p"
			repo, err := Repository(prefix + placeholder)
			if err != nil {
				return nil, fmt.Errorf("allow-list entry %q is not a repository prefix", entry)
			}
			out = append(out, strings.TrimSuffix(repo, placeholder)+"/")
			continue
		}
		if strings.Contains(entry, "@") || strings.LastIndexByte(entry, ':') > strings.LastIndexByte(entry, '/') {
			// The job's version replaces any tag, so a tag here would not
			// pin what the entry seems to pin.
			return nil, fmt.Errorf("allow-list entry %q names a tag or digest: list the repository alone", entry)
		}
		repo, err := Repository(entry)
		if err != nil {
			return nil, fmt.Errorf("allow-list entry %q: %w", entry, err)
		}
		out = append(out, repo)
	}
	return out, nil
}

// RepositoryAllowed reports whether repo may be used given an allow-list.
// Entries are normalised repositories (exact match) or prefixes ending in "/"
// (e.g. "docker.io/kubeedge/"). An empty list allows everything. repo is
// normalised first, so a bare "kubeedge/installation-package" is compared as
// "docker.io/kubeedge/installation-package"; an unparsable repo is refused.
func RepositoryAllowed(repo string, allowed []string) bool {
	if len(allowed) == 0 {
		return true
	}
	if repo == "" {
		// Repository("") is the default image, but an empty repo here is a
		// caller bug, not a request for the default.
		return false
	}
	norm, err := Repository(repo)
	if err != nil {
		return false
	}
	for _, entry := range allowed {
		if entry == "" {
			continue
		}
		if strings.HasSuffix(entry, "/") {
			if strings.HasPrefix(norm, entry) {
				return true
			}
			continue
		}
		if entry == norm {
			return true
		}
		// Tolerate an entry written in short form.
		if e, err := Repository(entry); err == nil && e == norm {
			return true
		}
	}
	return false
}

// ValidateDigest checks a digest the way the CRD's grammar does: sha256, in
// lower-case hex.
func ValidateDigest(digest string) error {
	if !digestRE.MatchString(digest) {
		return fmt.Errorf("%q is not a digest: want sha256: and 64 lower-case hex digits", digest)
	}
	return nil
}

// Pinned is the reference that pulls repo's image by digest alone,
// "<repo>@<digest>": the container runtime verifies the content it gets
// against the digest, whatever a tag now points to.
func Pinned(repo, digest string) string { return repo + "@" + digest }
