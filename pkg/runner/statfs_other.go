//go:build !linux

package runner

import "errors"

// The runner only runs on Linux edge nodes; elsewhere the disk check fails
// rather than guessing.
func statfs(string) (blocks, free, avail uint64, err error) {
	return 0, 0, 0, errors.New("disk check is only supported on linux")
}
