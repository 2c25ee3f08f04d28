package kubeedgeworld

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The machines run as host root, so every machine's systemd, journald,
// containerd and edgecore draw inotify instances from root's one host-wide
// allowance, fs.inotify.max_user_instances (128 on Debian), and so do the
// other worlds of a parallel test run. Measured: six machines beside three
// other worlds ran out; a machine's containerd then started without its CRI
// plugin ("failed to create fsnotify watcher: too many open files") and its
// edgecore crash-looped, and another machine's systemd never finished
// starting. Each world raises the allowance while it runs and the last one
// to stop puts the host's value back.
const (
	inotifyInstancesPath  = "/proc/sys/fs/inotify/max_user_instances"
	worldInotifyInstances = 8192
	// hostLimitsStatePath records the host's original value and the pid of
	// every world holding the raise: "<original>\n<pid>\n<pid>...". A world
	// killed without stopping leaves its pid; the next world prunes dead pids,
	// so the host gets its value back at the next clean stop.
	hostLimitsStatePath = "/run/nodeupgrade-kubeedgeworld-limits"
)

// raiseHostLimits raises the inotify allowance for this world and returns
// the function that gives it back.
func raiseHostLimits() (release func() error, err error) {
	err = withHostLimitsState(func(original int, holders []int) (int, []int, error) {
		// A file left by killed worlds keeps the host's original value.
		if original == 0 {
			cur, err := readInt(inotifyInstancesPath)
			if err != nil {
				return 0, nil, err
			}
			original = cur
		}
		if cur, err := readInt(inotifyInstancesPath); err == nil && cur < worldInotifyInstances {
			if err := os.WriteFile(inotifyInstancesPath, []byte(strconv.Itoa(worldInotifyInstances)), 0o644); err != nil {
				return 0, nil, fmt.Errorf("raise %s: %w", inotifyInstancesPath, err)
			}
		}
		return original, append(holders, os.Getpid()), nil
	})
	if err != nil {
		return nil, err
	}
	return func() error {
		return withHostLimitsState(func(original int, holders []int) (int, []int, error) {
			if i := slices.Index(holders, os.Getpid()); i >= 0 {
				holders = append(holders[:i], holders[i+1:]...)
			}
			if len(holders) == 0 {
				if err := os.WriteFile(inotifyInstancesPath, []byte(strconv.Itoa(original)), 0o644); err != nil {
					return original, holders, fmt.Errorf("restore %s: %w", inotifyInstancesPath, err)
				}
			}
			return original, holders, nil
		})
	}, nil
}

// withHostLimitsState runs change under an exclusive lock on the state file,
// with dead holders pruned, and writes back what it returns (removing the
// file when no holder is left).
func withHostLimitsState(change func(original int, holders []int) (int, []int, error)) error {
	f, err := lockedStateFile()
	if err != nil {
		return err
	}
	defer f.Close() // releases the lock
	data, err := os.ReadFile(hostLimitsStatePath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	original, holders := parseHostLimitsState(string(data))
	original, holders, err = change(original, holders)
	if err != nil {
		return err
	}
	if len(holders) == 0 {
		// Removed while locked: a waiter then finds its inode unlinked and retries.
		return os.Remove(hostLimitsStatePath)
	}
	lines := []string{strconv.Itoa(original)}
	for _, pid := range holders {
		lines = append(lines, strconv.Itoa(pid))
	}
	return os.WriteFile(hostLimitsStatePath, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// lockedStateFile opens and exclusively locks the state file, retrying when
// the file it locked was removed meanwhile by the last holder.
func lockedStateFile() (*os.File, error) {
	for {
		f, err := os.OpenFile(hostLimitsStatePath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", hostLimitsStatePath, err)
		}
		var locked, now syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &locked) == nil && syscall.Stat(hostLimitsStatePath, &now) == nil && locked.Ino == now.Ino {
			return f, nil
		}
		f.Close()
	}
}

// parseHostLimitsState reads "<original>\n<pid>..." and drops pids of
// processes that no longer exist.
func parseHostLimitsState(s string) (original int, holders []int) {
	for i, field := range strings.Fields(s) {
		n, err := strconv.Atoi(field)
		if err != nil {
			continue
		}
		if i == 0 {
			original = n
			continue
		}
		if err := syscall.Kill(n, 0); err == nil || errors.Is(err, syscall.EPERM) {
			holders = append(holders, n)
		}
	}
	return original, holders
}

func readInt(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}
