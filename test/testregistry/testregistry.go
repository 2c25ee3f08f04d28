// Package testregistry is a container registry for tests: go-containerregistry's
// registry (the OCI distribution API, in memory) over TLS, behind basic auth,
// with images of the platforms a test asks for.
package testregistry

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The registry's only account.
const (
	User     = "mirror"
	Password = "s3cret"
)

// Registry is a running test registry.
type Registry struct {
	// Host is HOST:PORT, as image references name it.
	Host   string
	server *httptest.Server
}

// Start starts a registry; Close stops it.
func Start() *Registry {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != User || p != Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		reg.ServeHTTP(w, r)
	}))
	return &Registry{Host: strings.TrimPrefix(srv.URL, "https://"), server: srv}
}

// Close stops the registry.
func (r *Registry) Close() { r.server.Close() }

// Transport trusts the registry's certificate.
func (r *Registry) Transport() http.RoundTripper { return r.server.Client().Transport }

// Push writes repo:tag (repo without the host) as an index of a small
// random image for each platform ("linux/amd64", "linux/arm64/v8", ...),
// or as the one image when one platform is given. It returns the tag's
// digest and each image's digest by platform.
func (r *Registry) Push(repo, tag string, platforms ...string) (tagDigest string, images map[string]string, err error) {
	ref, err := name.NewTag(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		return "", nil, err
	}
	opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: User, Password: Password}), remote.WithTransport(r.Transport())}
	images = map[string]string{}
	var idx v1.ImageIndex = empty.Index
	var last v1.Image
	for _, p := range platforms {
		platform, err := v1.ParsePlatform(p)
		if err != nil {
			return "", nil, err
		}
		img, err := platformImage(*platform)
		if err != nil {
			return "", nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return "", nil, err
		}
		images[p] = d.String()
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: platform}})
		last = img
	}
	if len(platforms) == 1 {
		if err := remote.Write(ref, last, opts...); err != nil {
			return "", nil, err
		}
		return images[platforms[0]], images, nil
	}
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return "", nil, err
	}
	d, err := idx.Digest()
	if err != nil {
		return "", nil, err
	}
	return d.String(), images, nil
}

func platformImage(p v1.Platform) (v1.Image, error) {
	img, err := random.Image(64, 1)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	return mutate.ConfigFile(img, cfg)
}

// WriteCAFile writes the registry's certificate as PEM into dir.
func (r *Registry) WriteCAFile(dir string) (string, error) {
	p := filepath.Join(dir, "registry-ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.server.Certificate().Raw})
	return p, os.WriteFile(p, data, 0o600)
}

// WriteCredentialsFile writes a docker config.json with the registry's
// account, under password (Password, or a wrong one to test a refusal).
func (r *Registry) WriteCredentialsFile(dir, password string) (string, error) {
	p := filepath.Join(dir, "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte(User + ":" + password))
	data := fmt.Sprintf(`{"auths":{"https://%s":{"auth":%q}}}`, r.Host, auth)
	return p, os.WriteFile(p, []byte(data), 0o600)
}
