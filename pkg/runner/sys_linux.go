//go:build linux

package runner

import (
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The runner's system calls, here so that the package, whose contract the
// controller and the kubectl plugin import, builds on every platform the
// plugin is released for (sys_other.go).

// oNoFollow makes an open refuse a symlink in the path's place.
const oNoFollow = syscall.O_NOFOLLOW

// errLockBusy is tryLock's error when another holds the lock.
var errLockBusy = syscall.EWOULDBLOCK

// bootTime is the time since the node booted, sleep included
// (CLOCK_BOOTTIME).
func bootTime() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// killGroupOnCancel runs cmd in a process group of its own and kills the
// whole group when its context ends, so no child outlives it.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// inode is a file's inode number.
func inode(fi os.FileInfo) (uint64, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino, true
	}
	return 0, false
}

// changeTime is a file's status change time (ctime), which any rewrite of
// the file moves.
func changeTime(fi os.FileInfo) syscall.Timespec {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim
	}
	return syscall.Timespec{}
}

func syncFileSystems() { syscall.Sync() }

// tryLock takes an exclusive flock on f without waiting: errLockBusy when
// another holds it.
func tryLock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func releaseLock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
