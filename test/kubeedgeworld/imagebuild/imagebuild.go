// Package imagebuild writes single-layer container images as docker-archive
// tarballs (the format of `docker save`), which `ctr images import` loads,
// without docker and without any dependency beyond the standard library.
//
// An image is a list of entries: files copied from the host, directories and
// symlinks. Busybox adds /bin/busybox from the host's busybox-static and a
// symlink per applet, so images have sh, cp, sleep, mkdir and nsenter.
package imagebuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Entry is one path in the image's only layer.
type Entry struct {
	// Path inside the image, absolute (/usr/local/bin/keadm).
	Path string
	// Source is a host file copied to Path. Empty with Link empty: a directory.
	Source string
	// Link makes Path a symlink to Link.
	Link string
	// Mode of a file or directory; zero: the source's mode (files) or 0755.
	Mode os.FileMode
}

// Image is what Write puts in the archive.
type Image struct {
	// Ref is the full reference, e.g. docker.io/kubeedge/installation-package:v1.22.0.
	Ref        string
	Entries    []Entry
	Entrypoint []string
	Cmd        []string
	Env        []string
	// User is the config's user, e.g. 65532:65532; empty: root.
	User string
	// Platform is the image's platform in an Index (WriteOCI); Write's
	// single-platform archive is always the build machine's.
	Platform Platform
}

// BusyboxPath is Debian busybox-static's binary.
const BusyboxPath = "/bin/busybox"

// Busybox returns entries for /bin/busybox (copied from the host's
// busybox-static) and a symlink in /bin for each of its applets, plus the
// extra links given as path=>target (e.g. /usr/bin/nsenter => /bin/busybox).
func Busybox(extraLinks map[string]string) ([]Entry, error) {
	return BusyboxFrom(BusyboxPath, extraLinks)
}

// BusyboxFrom is Busybox with the binary copied from binary (another
// platform's busybox-static): the applets are listed by the host's
// busybox, which hack/kubeedge-deps.sh takes from the same Debian release.
func BusyboxFrom(binary string, extraLinks map[string]string) ([]Entry, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("imagebuild: busybox for the image (hack/kubeedge-deps.sh image): %w", err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %s --list (install busybox-static): %w", BusyboxPath, err)
	}
	entries := []Entry{{Path: "/bin"}, {Path: "/usr"}, {Path: "/usr/bin"}, {Path: "/tmp", Mode: 0o1777}, {Path: BusyboxPath, Source: binary, Mode: 0o755}}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		entries = append(entries, Entry{Path: "/bin/" + name, Link: "busybox"})
	}
	keys := make([]string, 0, len(extraLinks))
	for k := range extraLinks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		entries = append(entries, Entry{Path: k, Link: extraLinks[k]})
	}
	return entries, nil
}

// BusyboxBinary is busybox-static for platform p: the host's for the
// build machine's architecture, else the one hack/kubeedge-deps.sh took
// from Debian's .deb into binDir/busybox-<Debian architecture>/.
func BusyboxBinary(binDir string, p Platform) string {
	if p.Architecture == runtime.GOARCH && (p.Variant == "" || p.Architecture != "arm") {
		return BusyboxPath
	}
	debArch := p.Architecture
	if p.Architecture == "arm" {
		debArch = "armhf" // Debian's ARMv7 hard-float
	}
	return filepath.Join(binDir, "busybox-"+debArch, "busybox")
}

type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// Write writes img as a docker-archive tarball at out (via out.tmp, renamed
// when complete).
func Write(out string, img Image) (err error) {
	if img.Ref == "" || !strings.Contains(img.Ref, ":") {
		return fmt.Errorf("imagebuild: reference %q needs a tag", img.Ref)
	}
	tmpLayer, err := os.CreateTemp(path.Dir(out), ".layer-*.tar")
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	defer func() {
		_ = tmpLayer.Close()
		_ = os.Remove(tmpLayer.Name())
	}()
	sum := sha256.New()
	if err := writeLayer(io.MultiWriter(tmpLayer, sum), img.Entries); err != nil {
		return err
	}
	diffID := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	layerSize, err := tmpLayer.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if _, err := tmpLayer.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}

	env := img.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	config := map[string]any{
		"Entrypoint": img.Entrypoint,
		"Cmd":        img.Cmd,
		"Env":        env,
	}
	if img.User != "" {
		config["User"] = img.User
	}
	cfg := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config":       config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history": []map[string]any{{
			"created":    time.Unix(0, 0).UTC().Format(time.RFC3339),
			"created_by": "nodeupgrade test/kubeedgeworld/imagebuild",
		}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	cfgSum := sha256.Sum256(cfgJSON)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	layerName := strings.TrimPrefix(diffID, "sha256:") + "/layer.tar"
	manifest, err := json.Marshal([]manifestEntry{{Config: cfgName, RepoTags: []string{img.Ref}, Layers: []string{layerName}}})
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}

	a, err := createArchive(out)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			a.abort()
		}
	}()
	if err := a.dir(path.Dir(layerName) + "/"); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := a.file(layerName, layerSize, tmpLayer); err != nil {
		return fmt.Errorf("imagebuild: copy layer: %w", err)
	}
	if err := a.file(cfgName, int64(len(cfgJSON)), bytes.NewReader(cfgJSON)); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := a.file("manifest.json", int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	return a.commit()
}

// writeLayer writes the entries as a tar stream, parents first, each parent
// directory created implicitly when not listed.
func writeLayer(w io.Writer, entries []Entry) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	seen := map[string]bool{}
	var mkParents func(p string) error
	mkParents = func(p string) error {
		dir := path.Dir(p)
		if dir == "/" || dir == "." || seen[dir] {
			return nil
		}
		if err := mkParents(dir); err != nil {
			return err
		}
		seen[dir] = true
		return tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dir, "/") + "/", Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir})
	}
	for _, e := range entries {
		if !path.IsAbs(e.Path) {
			return fmt.Errorf("imagebuild: path %q is not absolute", e.Path)
		}
		p := path.Clean(e.Path)
		if seen[p] {
			continue
		}
		if err := mkParents(p); err != nil {
			return fmt.Errorf("imagebuild: %w", err)
		}
		seen[p] = true
		name := strings.TrimPrefix(p, "/")
		switch {
		case e.Link != "":
			if err := tw.WriteHeader(&tar.Header{Name: name, Linkname: e.Link, Mode: 0o777, ModTime: epoch, Typeflag: tar.TypeSymlink}); err != nil {
				return fmt.Errorf("imagebuild: %w", err)
			}
		case e.Source == "":
			mode := e.Mode
			if mode == 0 {
				mode = 0o755
			}
			if err := tw.WriteHeader(&tar.Header{Name: name + "/", Mode: int64(mode.Perm() | (mode & os.ModeSticky)), ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
				return fmt.Errorf("imagebuild: %w", err)
			}
		default:
			if err := copyFile(tw, name, e); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func copyFile(tw *tar.Writer, name string, e Entry) error {
	f, err := os.Open(e.Source)
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("imagebuild: %s is not a regular file", e.Source)
	}
	mode := e.Mode
	if mode == 0 {
		mode = info.Mode().Perm()
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(mode.Perm()), Size: info.Size(), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("imagebuild: copy %s: %w", e.Source, err)
	}
	return nil
}

// Digest is a helper for callers keying caches by content: the sha256 of the
// named files' sizes and modification times plus the extra strings.
func Digest(files []string, extra ...string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("imagebuild: %w", err)
		}
		_, _ = fmt.Fprintf(h, "%s %d %d\n", f, info.Size(), info.ModTime().UnixNano())
	}
	for _, s := range extra {
		_, _ = fmt.Fprintf(h, "%s\n", s)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// WriteCached writes img to out unless out holds it already: a stamp file
// beside it (out + ".key") keys the tarball by every entry's source file
// (size and time) and the image's reference, user, entrypoint and entry
// count.
func WriteCached(out string, img Image) error {
	var sources []string
	for _, e := range img.Entries {
		if e.Source != "" {
			sources = append(sources, e.Source)
		}
	}
	key, err := Digest(sources, img.Ref, img.User, fmt.Sprint(img.Entrypoint), fmt.Sprint(len(img.Entries)))
	if err != nil {
		return err
	}
	return writeIfStale(out, key, func() error { return Write(out, img) })
}

// writeIfStale runs write unless out exists and the stamp beside it
// (out + ".key") holds key, and then records key.
func writeIfStale(out, key string, write func() error) error {
	stamp := out + ".key"
	if old, err := os.ReadFile(stamp); err == nil && string(old) == key {
		if _, err := os.Stat(out); err == nil {
			return nil
		}
	}
	if err := write(); err != nil {
		return err
	}
	return os.WriteFile(stamp, []byte(key), 0o644)
}
