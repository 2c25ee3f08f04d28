//go:build linux

package runner

import "syscall"

func statfs(path string) (blocks, free, avail uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, 0, err
	}
	return st.Blocks, st.Bfree, st.Bavail, nil
}
