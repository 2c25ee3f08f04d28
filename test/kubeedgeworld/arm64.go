package kubeedgeworld

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// arm64 edge nodes (Options.Arm64Nodes) run under QEMU user emulation:
// Debian's qemu-user-static registered with binfmt_misc (flags POF: the
// interpreter is opened at registration, so arm64 programs run inside the
// machines, which lack it). In such a machine the userland (Debian arm64),
// systemd, containerd and its shim, edgecore, keadm, the runner and busybox
// in the images are arm64; runc is the host's x86-64 one
// (hack/kubeedge-deps.sh rootfs-arm64 says why), and the kernel is the
// host's, as with every nspawn machine.

// ArchARM64 is the architecture of an arm64 node, as GOARCH and Kubernetes
// (node.status.nodeInfo.architecture) spell it.
const ArchARM64 = "arm64"

// BinaryPathArch is where hack/build-kubeedge.sh puts a KubeEdge binary
// built for arch (VERSION@arm64): the build machine's is BinaryPath.
func BinaryPathArch(version, arch, name string) string {
	if arch == "" || arch == hostArch() {
		return BinaryPath(version, name)
	}
	return filepath.Join(testenv.RepoRoot(), "bin", "kubeedge-"+version+"-linux-"+arch, name)
}

// hostArch is the build machine's architecture, whose binaries BinaryPath
// names.
func hostArch() string { return runtime.GOARCH }

// rootfsTarball is the cached root file system of a node of arch.
func rootfsTarball(arch string) string {
	name := "kubeedge-rootfs-" + RootfsVersion + ".tar"
	if arch == ArchARM64 {
		name = "kubeedge-rootfs-" + RootfsVersion + "-arm64.tar"
	}
	return filepath.Join(testenv.RepoRoot(), "bin", name)
}

// arm64Builds are the build-kubeedge.sh specs arm64 nodes need: edgecore
// of the nodes' version, keadm and edgecore of each installation package.
func arm64Builds(nodeVersion string, versions []string) []string {
	specs := []string{nodeVersion + "@arm64:edgecore"}
	for _, v := range versions {
		specs = append(specs, v+"@arm64:keadm,edgecore")
	}
	return specs
}

const (
	binfmtDir      = "/proc/sys/fs/binfmt_misc"
	binfmtAArch64  = binfmtDir + "/qemu-aarch64"
	binfmtConfFile = "/usr/lib/binfmt.d/qemu-aarch64.conf" // Debian's qemu-user-static
)

// binfmtState is what enableARM64Emulation changed on the host, so that
// the world leaves it as it found it.
type binfmtState struct{ mounted, registered bool }

// enableARM64Emulation mounts binfmt_misc and registers QEMU's aarch64
// entry when they are not there.
func enableARM64Emulation() (binfmtState, error) {
	var st binfmtState
	if _, err := os.Stat(binfmtDir + "/register"); err != nil {
		if err := syscall.Mount("binfmt_misc", binfmtDir, "binfmt_misc", 0, ""); err != nil {
			return st, fmt.Errorf("mount binfmt_misc: %w", err)
		}
		st.mounted = true
	}
	if _, err := os.Stat(binfmtAArch64); err == nil {
		return st, nil // registered already (by the host or another world): left alone
	}
	conf, err := os.ReadFile(binfmtConfFile)
	if err != nil {
		return st, errors.Join(fmt.Errorf("QEMU's aarch64 entry (apt-get install qemu-user-static): %w", err), st.undo())
	}
	var line string
	for _, l := range strings.Split(string(conf), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			line = l
		}
	}
	if err := os.WriteFile(binfmtDir+"/register", []byte(line), 0o200); err != nil {
		return st, errors.Join(fmt.Errorf("register %s: %w", binfmtConfFile, err), st.undo())
	}
	st.registered = true
	return st, nil
}

// undo removes what enableARM64Emulation added. A registration someone
// else made stays.
func (st binfmtState) undo() error {
	var errs []error
	if st.registered {
		if err := os.WriteFile(binfmtAArch64, []byte("-1"), 0o200); err != nil {
			errs = append(errs, fmt.Errorf("unregister qemu-aarch64: %w", err))
		}
	}
	if st.mounted {
		if err := syscall.Unmount(binfmtDir, 0); err != nil {
			errs = append(errs, fmt.Errorf("umount binfmt_misc: %w", err))
		}
	}
	return errors.Join(errs...)
}
