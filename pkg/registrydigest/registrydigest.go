// Package registrydigest resolves the install image's digests from its
// registry (spec.imageDigestGatter.registryAPI): the digest the tag names
// and, per architecture, the digest of the linux image a node of that
// architecture pulls.
//
// The registry's credentials are the controller's, never a job's: a
// docker config file (a kubernetes.io/dockerconfigjson Secret mounted into
// the controller's pod, --registry-credentials-file), so whoever writes a
// job can neither read a token nor choose whose token is sent. The
// registry protocol, token exchange included, is go-containerregistry's.
package registrydigest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Architectures are the node architectures a job resolves digests for:
// the ones KubeEdge's v1alpha2 imageDigestGatter names.
var Architectures = []string{"amd64", "arm64"}

// Digests are what a registry serves for one tag.
type Digests struct {
	// Tag is the digest of the manifest or index the tag names.
	Tag string
	// ByArch is the digest of the linux image for each architecture the
	// tag serves, among Architectures.
	ByArch map[string]string
}

// Options configure a Resolver.
type Options struct {
	// CredentialsFile is a docker config.json ({"auths": {HOST: {auth |
	// username, password}}}); empty means anonymous.
	CredentialsFile string
	// CAFile holds PEM certificates trusted beside the system's, for a
	// registry with a private CA; empty trusts the system's only.
	CAFile string
	// Timeout bounds one resolution; zero means 30 seconds.
	Timeout time.Duration
	// Transport, when set, replaces the one built from CAFile (tests).
	Transport http.RoundTripper
}

// Resolver looks digests up over the registry v2 API.
type Resolver struct {
	auths     map[string]authn.AuthConfig
	transport http.RoundTripper
	timeout   time.Duration
}

// New returns a Resolver, reading the credentials and CA files now, so a
// bad file stops the controller at start rather than failing jobs later.
func New(o Options) (*Resolver, error) {
	r := &Resolver{auths: map[string]authn.AuthConfig{}, transport: o.Transport, timeout: o.Timeout}
	if r.timeout <= 0 {
		r.timeout = 30 * time.Second
	}
	if o.CredentialsFile != "" {
		auths, err := readDockerConfig(o.CredentialsFile)
		if err != nil {
			return nil, err
		}
		r.auths = auths
	}
	if r.transport == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.CAFile != "" {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("registry CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("registry CA file %s: no PEM certificate in it", o.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		r.transport = tr
	}
	return r, nil
}

// Resolve looks ref (HOST/PATH:TAG) up. Only HTTPS is spoken: a registry
// the controller reads digests from is one whose answer decides what runs
// as root on the nodes.
func (r *Resolver) Resolve(ctx context.Context, ref string) (Digests, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return Digests{}, fmt.Errorf("%s: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	auth := authn.Anonymous
	if cfg, ok := r.authFor(tag.RegistryStr()); ok {
		auth = authn.FromConfig(cfg)
	}
	desc, err := remote.Get(tag, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(r.transport))
	if err != nil {
		return Digests{}, fmt.Errorf("%s: %w", ref, err)
	}
	out := Digests{Tag: desc.Digest.String(), ByArch: map[string]string{}}
	switch {
	case desc.MediaType.IsIndex():
		index, err := desc.ImageIndex()
		if err != nil {
			return Digests{}, fmt.Errorf("%s: %w", ref, err)
		}
		manifest, err := index.IndexManifest()
		if err != nil {
			return Digests{}, fmt.Errorf("%s: reading its index: %w", ref, err)
		}
		for _, m := range manifest.Manifests {
			if arch, ok := nodeArch(m.Platform); ok && out.ByArch[arch] == "" {
				out.ByArch[arch] = m.Digest.String()
			}
		}
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return Digests{}, fmt.Errorf("%s: %w", ref, err)
		}
		config, err := img.ConfigFile()
		if err != nil {
			return Digests{}, fmt.Errorf("%s: reading its image config: %w", ref, err)
		}
		if arch, ok := nodeArch(config.Platform()); ok {
			out.ByArch[arch] = desc.Digest.String()
		}
	default:
		return Digests{}, fmt.Errorf("%s: the registry serves a %s, neither an image nor an index", ref, desc.MediaType)
	}
	if len(out.ByArch) == 0 {
		return Digests{}, fmt.Errorf("%s: the registry serves no linux image for %s", ref, strings.Join(Architectures, " or "))
	}
	return out, nil
}

// nodeArch is the node architecture a manifest's platform serves: linux
// amd64, or linux arm64 of variant v8 or none (what an arm64 node's
// containerd picks).
func nodeArch(p *v1.Platform) (string, bool) {
	if p == nil || p.OS != "linux" {
		return "", false
	}
	switch {
	case p.Architecture == "amd64":
		return "amd64", true
	case p.Architecture == "arm64" && (p.Variant == "" || p.Variant == "v8"):
		return "arm64", true
	}
	return "", false
}

// authFor finds host's entry in the docker config, under the host or an
// https:// URL of it, as docker writes them; Docker Hub's under any of its
// names.
func (r *Resolver) authFor(host string) (authn.AuthConfig, bool) {
	names := []string{host}
	if host == name.DefaultRegistry || host == "docker.io" {
		names = []string{name.DefaultRegistry, "docker.io", "registry-1.docker.io"}
	}
	for _, n := range names {
		if cfg, ok := r.auths[n]; ok {
			return cfg, true
		}
	}
	return authn.AuthConfig{}, false
}

// readDockerConfig reads a docker config.json's auths, keyed by host
// (an https:// or http:// prefix and a path are dropped).
func readDockerConfig(path string) (map[string]authn.AuthConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry credentials file: %w", err)
	}
	var file struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("registry credentials file %s is not a docker config.json: %w", path, err)
	}
	auths := map[string]authn.AuthConfig{}
	for key, a := range file.Auths {
		cfg := authn.AuthConfig{Username: a.Username, Password: a.Password}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("registry credentials file %s: the auth of %q is not base64", path, key)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("registry credentials file %s: the auth of %q is not user:password", path, key)
			}
			cfg.Username, cfg.Password = user, pass
		}
		if cfg.Username == "" {
			return nil, fmt.Errorf("registry credentials file %s: %q has no user name", path, key)
		}
		host := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		auths[host] = cfg
	}
	if len(auths) == 0 {
		return nil, errors.New("registry credentials file " + path + " has no auths")
	}
	return auths, nil
}
