package imagebuild

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"time"
)

// archive is an image archive (docker-archive or OCI layout) written as a
// tar file next to out, under out+".tmp", and renamed to out only when
// whole: a reader never sees half an image, and a failed write leaves
// nothing. Every entry carries the epoch as its time, so the same content
// gives the same bytes.
type archive struct {
	out string
	f   *os.File
	tw  *tar.Writer
}

var entryTime = time.Unix(0, 0)

func createArchive(out string) (*archive, error) {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	return &archive{out: out, f: f, tw: tar.NewWriter(f)}, nil
}

// dir adds a directory entry; name ends in "/".
func (a *archive) dir(name string) error {
	return a.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, ModTime: entryTime, Typeflag: tar.TypeDir})
}

// file adds a regular file of size bytes read from r.
func (a *archive) file(name string, size int64, r io.Reader) error {
	if err := a.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: entryTime, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := io.Copy(a.tw, r)
	return err
}

// commit ends the tar stream and puts the archive in place.
func (a *archive) commit() error {
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	return os.Rename(a.out+".tmp", a.out)
}

// abort drops what was written (after a failed write; not after commit).
func (a *archive) abort() {
	_ = a.f.Close()
	_ = os.Remove(a.out + ".tmp")
}
