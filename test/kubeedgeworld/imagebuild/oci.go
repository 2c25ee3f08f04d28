package imagebuild

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// OCI media types and the annotations `ctr images import` names an image by.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	// MediaTypeLayer is an uncompressed layer: nothing here crosses a slow
	// link, and gzip would cost more CPU than the bytes it saves.
	MediaTypeLayer = "application/vnd.oci.image.layer.v1.tar"

	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// Platform is one entry of an index: OS, architecture and variant as the
// OCI image spec (and GOOS/GOARCH) spell them.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// The platforms the project's images are built for: the binaries are pure
// Go, and Debian ships busybox-static for each.
var (
	LinuxAMD64 = Platform{OS: "linux", Architecture: "amd64"}
	LinuxARM64 = Platform{OS: "linux", Architecture: "arm64"}
	LinuxARMv7 = Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

// Index is a multi-platform image: one Image per platform under one
// reference. Each Image's Ref is ignored; its Platform must be set.
type Index struct {
	Ref    string
	Images []Image
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

type ociIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// blob is one piece of content: in memory (data) or in a file (path).
type blob struct {
	Descriptor
	data []byte
	path string
}

func (b blob) open() (io.ReadCloser, error) {
	if b.path != "" {
		return os.Open(b.path)
	}
	return io.NopCloser(strings.NewReader(string(b.data))), nil
}

func jsonBlob(mediaType string, v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, fmt.Errorf("imagebuild: %w", err)
	}
	sum := sha256.Sum256(data)
	return blob{Descriptor: Descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}, data: data}, nil
}

// layout is an index built into blobs: its layers in files under a
// temporary folder, everything else in memory.
type layout struct {
	tmp   string
	blobs []blob // layers, configs, manifests, then the index: each before what points to it
	index blob
}

func (l *layout) close() { _ = os.RemoveAll(l.tmp) }

// build writes each platform's layer and makes the configs, manifests and
// the index that names them.
func build(dir string, idx Index) (_ *layout, err error) {
	if idx.Ref == "" || !strings.Contains(path.Base(idx.Ref), ":") {
		return nil, fmt.Errorf("imagebuild: reference %q needs a tag", idx.Ref)
	}
	if len(idx.Images) == 0 {
		return nil, fmt.Errorf("imagebuild: %s has no platform", idx.Ref)
	}
	l := &layout{}
	if l.tmp, err = os.MkdirTemp(dir, ".oci-*"); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	var manifests []Descriptor
	seen := map[string]bool{}
	for i, img := range idx.Images {
		p := img.Platform
		if p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("imagebuild: %s: image %d has no platform", idx.Ref, i)
		}
		if seen[p.String()] {
			return nil, fmt.Errorf("imagebuild: %s: platform %s twice", idx.Ref, p)
		}
		seen[p.String()] = true
		layerPath := filepath.Join(l.tmp, fmt.Sprintf("layer-%d.tar", i))
		f, err := os.Create(layerPath)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %w", err)
		}
		sum := sha256.New()
		err = writeLayer(io.MultiWriter(f, sum), img.Entries)
		size, _ := f.Seek(0, io.SeekCurrent)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		layer := blob{Descriptor: Descriptor{MediaType: MediaTypeLayer, Digest: "sha256:" + hex.EncodeToString(sum.Sum(nil)), Size: size}, path: layerPath}
		config, err := jsonBlob(MediaTypeConfig, imageConfig(img, p, layer.Digest))
		if err != nil {
			return nil, err
		}
		manifest, err := jsonBlob(MediaTypeManifest, ociManifest{SchemaVersion: 2, MediaType: MediaTypeManifest,
			Config: config.Descriptor, Layers: []Descriptor{layer.Descriptor}})
		if err != nil {
			return nil, err
		}
		l.blobs = append(l.blobs, layer, config, manifest)
		d := manifest.Descriptor
		d.Platform = &Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
		manifests = append(manifests, d)
	}
	if l.index, err = jsonBlob(MediaTypeIndex, ociIndex{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: manifests}); err != nil {
		return nil, err
	}
	l.blobs = append(l.blobs, l.index)
	return l, nil
}

// imageConfig is the OCI image config of one platform's image.
func imageConfig(img Image, p Platform, diffID string) map[string]any {
	env := img.Env
	if len(env) == 0 {
		env = []string{DefaultPath}
	}
	config := map[string]any{"Entrypoint": img.Entrypoint, "Cmd": img.Cmd, "Env": env}
	if img.User != "" {
		config["User"] = img.User
	}
	epoch := time.Unix(0, 0).UTC().Format(time.RFC3339)
	cfg := map[string]any{
		"architecture": p.Architecture,
		"os":           p.OS,
		"created":      epoch,
		"config":       config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []map[string]any{{"created": epoch, "created_by": "nodeupgrade test/kubeedgeworld/imagebuild"}},
	}
	if p.Variant != "" {
		cfg["variant"] = p.Variant
	}
	return cfg
}

// DefaultPath is the PATH an image gets when it sets no Env.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// WriteOCI writes idx as an OCI image layout in a tar file at out (via
// out.tmp): `ctr images import` loads it under idx.Ref with every
// platform's content, and `docker load` (25+) reads it too.
func WriteOCI(out string, idx Index) (err error) {
	l, err := build(filepath.Dir(out), idx)
	if err != nil {
		return err
	}
	defer l.close()
	a, err := createArchive(out)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			a.abort()
		}
	}()
	layoutFile := `{"imageLayoutVersion":"1.0.0"}`
	if err := a.file("oci-layout", int64(len(layoutFile)), strings.NewReader(layoutFile)); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := a.dir("blobs/sha256/"); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	written := map[string]bool{}
	for _, b := range l.blobs {
		if written[b.Digest] {
			continue // two platforms with the same config, say
		}
		written[b.Digest] = true
		r, err := b.open()
		if err != nil {
			return fmt.Errorf("imagebuild: %w", err)
		}
		err = a.file("blobs/sha256/"+strings.TrimPrefix(b.Digest, "sha256:"), b.Size, r)
		_ = r.Close()
		if err != nil {
			return fmt.Errorf("imagebuild: %w", err)
		}
	}
	top := l.index.Descriptor
	tag := idx.Ref[strings.LastIndex(idx.Ref, ":")+1:]
	top.Annotations = map[string]string{annotationRefName: tag, annotationContainerdName: idx.Ref}
	indexJSON, err := json.Marshal(ociIndex{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{top}})
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := a.file("index.json", int64(len(indexJSON)), strings.NewReader(string(indexJSON))); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	return a.commit()
}

// WriteOCICached writes idx to out unless out holds it already, keyed like
// WriteCached by every platform's entries.
func WriteOCICached(out string, idx Index) error {
	key, err := indexKey(idx)
	if err != nil {
		return err
	}
	return writeIfStale(out, key, func() error { return WriteOCI(out, idx) })
}

func indexKey(idx Index) (string, error) {
	var sources, extra []string
	extra = append(extra, "oci", idx.Ref)
	for _, img := range idx.Images {
		for _, e := range img.Entries {
			if e.Source != "" {
				sources = append(sources, e.Source)
			}
		}
		extra = append(extra, img.Platform.String(), img.User, fmt.Sprint(img.Entrypoint), fmt.Sprint(img.Cmd), fmt.Sprint(len(img.Entries)))
	}
	return Digest(sources, extra...)
}

// ReadOCIIndex reads the platforms an OCI layout tarball written by WriteOCI
// holds, in its index's order, and the reference it names.
func ReadOCIIndex(file string) (string, []Platform, error) {
	small, top, err := readSmall(file)
	if err != nil {
		return "", nil, err
	}
	var inner ociIndex
	if err := json.Unmarshal(small[top.Digest], &inner); err != nil {
		return "", nil, fmt.Errorf("%s: the image index: %w", file, err)
	}
	var out []Platform
	for _, m := range inner.Manifests {
		if m.Platform != nil {
			out = append(out, *m.Platform)
		}
	}
	return top.Annotations[annotationContainerdName], out, nil
}
