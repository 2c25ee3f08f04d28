//go:build !linux

package runner

import (
	"errors"
	"os"
	"os/exec"
	"time"
)

// The runner only runs on Linux edge nodes. Elsewhere (the kubectl plugin,
// which imports the contract, is released for darwin and windows too) its
// system calls fail rather than guess.

var errNotLinux = errors.New("the runner only runs on linux")

const oNoFollow = 0

var errLockBusy = errors.New("lock busy")

func bootTime() (time.Duration, error) { return 0, errNotLinux }

func killGroupOnCancel(*exec.Cmd) {}

func inode(os.FileInfo) (uint64, bool) { return 0, false }

// changeTime falls back to the modification time.
func changeTime(fi os.FileInfo) time.Time { return fi.ModTime() }

func syncFileSystems() {}

func tryLock(*os.File) error { return errNotLinux }

func releaseLock(*os.File) error { return errNotLinux }
