package imagebuild

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
)

// Registry is where PushOCI pushes: a distribution (registry:2) endpoint.
type Registry struct {
	// Base is the registry's URL, e.g. https://registry.example:5000.
	Base string
	// Client talks to it (its TLS config trusts the registry's CA).
	Client *http.Client
	// User and Password, for a registry with basic auth; empty: none.
	User, Password string
}

// PushOCI pushes an OCI layout tarball written by WriteOCI to repository
// repo (e.g. kubeedge/installation-package) at tag, with every platform:
// the blobs, each platform's manifest, then the index under the tag.
func PushOCI(ctx context.Context, r Registry, file, repo, tag string) error {
	small, top, err := readSmall(file)
	if err != nil {
		return err
	}
	// Blobs first (layers streamed from the tar, the rest from memory),
	// then manifests, which the registry checks against them.
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	manifests := map[string]bool{}
	var index ociIndex
	if err := json.Unmarshal(small[top.Digest], &index); err != nil {
		return fmt.Errorf("push %s: %w", file, err)
	}
	for _, m := range index.Manifests {
		manifests[m.Digest] = true
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if !strings.HasPrefix(h.Name, "blobs/sha256/") || h.Typeflag != tar.TypeReg {
			continue
		}
		digest := "sha256:" + path.Base(h.Name)
		if manifests[digest] || digest == top.Digest {
			continue
		}
		if err := r.pushBlob(ctx, repo, digest, h.Size, tr); err != nil {
			return err
		}
	}
	for _, m := range index.Manifests {
		if err := r.putManifest(ctx, repo, m.Digest, m.MediaType, small[m.Digest]); err != nil {
			return err
		}
	}
	return r.putManifest(ctx, repo, tag, MediaTypeIndex, small[top.Digest])
}

// readSmall reads index.json's one descriptor and every blob small enough
// to be a manifest, index or config.
func readSmall(file string) (map[string][]byte, Descriptor, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, Descriptor{}, err
	}
	defer f.Close()
	small := map[string][]byte{}
	var top ociIndex
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, Descriptor{}, err
		}
		if h.Size > 1<<20 {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, Descriptor{}, err
		}
		if h.Name == "index.json" {
			if err := json.Unmarshal(data, &top); err != nil {
				return nil, Descriptor{}, fmt.Errorf("%s: index.json: %w", file, err)
			}
		} else if strings.HasPrefix(h.Name, "blobs/sha256/") {
			small["sha256:"+path.Base(h.Name)] = data
		}
	}
	if len(top.Manifests) != 1 {
		return nil, Descriptor{}, fmt.Errorf("%s: index.json names %d images, want 1", file, len(top.Manifests))
	}
	return small, top.Manifests[0], nil
}

func (r Registry) do(ctx context.Context, method, u string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.User != "" {
		req.SetBasicAuth(r.User, r.Password)
	}
	return r.Client.Do(req)
}

func (r Registry) pushBlob(ctx context.Context, repo, digest string, size int64, content io.Reader) error {
	resp, err := r.do(ctx, http.MethodHead, r.Base+"/v2/"+repo+"/blobs/"+digest, nil, 0, "")
	if err != nil {
		return fmt.Errorf("push %s: %w", repo, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	resp, err = r.do(ctx, http.MethodPost, r.Base+"/v2/"+repo+"/blobs/uploads/", nil, 0, "")
	if err != nil {
		return fmt.Errorf("push %s: %w", repo, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("push %s: start upload: %s", repo, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("push %s: upload location: %w", repo, err)
	}
	base, _ := url.Parse(r.Base)
	loc = base.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	return r.put(ctx, "push "+repo+" blob "+digest, loc.String(), content, size, "application/octet-stream")
}

func (r Registry) putManifest(ctx context.Context, repo, ref, mediaType string, data []byte) error {
	if data == nil {
		return fmt.Errorf("push %s: manifest %s missing from the layout", repo, ref)
	}
	return r.put(ctx, "push "+repo+" manifest "+ref, r.Base+"/v2/"+repo+"/manifests/"+ref, strings.NewReader(string(data)), int64(len(data)), mediaType)
}

// put PUTs content to target and wants 201 Created, as the registry answers a
// finished blob upload and a manifest; what names the push in errors.
func (r Registry) put(ctx context.Context, what, target string, content io.Reader, size int64, contentType string) error {
	resp, err := r.do(ctx, http.MethodPut, target, content, size, contentType)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s: %s", what, resp.Status, msg)
	}
	return nil
}
