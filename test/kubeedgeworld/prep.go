package kubeedgeworld

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Files written into every node's rootfs before it boots.

// prepScript runs as a oneshot unit before containerd: what a real node has
// and an nspawn machine lacks.
const prepScript = `#!/bin/sh
# kubeedgeworld: make this nspawn machine look like a real edge node.
set -u
# kubelet inside edgecore opens /dev/kmsg (kind does the same).
[ -e /dev/kmsg ] || ln -s /dev/console /dev/kmsg
# nspawn mounts the cgroup v1 controllers read-only; runc needs them writable.
# Mounted again in this machine's cgroup namespace, each shows only the
# machine's own cgroup on the host (the world starts nspawn in it), so
# kubelet's /kubepods is this machine's alone.
for c in blkio cpu cpuacct cpuset devices freezer memory pids; do
  if [ -d /sys/fs/cgroup/$c ]; then
    umount -l /sys/fs/cgroup/$c 2>/dev/null || true
    mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
  fi
done
# kubelet wants these sysctls and writes them when they differ; nspawn
# mounts /proc/sys read-only (and they are not namespaced: writing them would
# change the host). Show kubelet the values it wants, in this machine only.
mkdir -p /run/kubeedgeworld-sysctl
for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
  k=${kv%%=*}; v=${kv#*=}
  if [ "$(cat /proc/sys/$k 2>/dev/null)" != "$v" ]; then
    f=/run/kubeedgeworld-sysctl/$(echo $k | tr / _)
    echo "$v" > $f
    mount --bind $f /proc/sys/$k
  fi
done
# Network: this machine's end of the veth nspawn made on the world's bridge.
ip link set lo up
ip addr add %[1]s/24 dev host0 2>/dev/null || true
ip link set host0 up
ip route replace default via %[2]s
exit 0
`

const prepUnit = `[Unit]
Description=kubeedgeworld node preparation (kmsg, cgroups, network)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service edgecore.service kubelet.service network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kubeedgeworld-prep
[Install]
WantedBy=multi-user.target
`

const importScript = `#!/bin/sh
# kubeedgeworld: load the test images; nothing can be pulled from a registry.
set -eu
for f in /var/lib/kubeedgeworld/images/*.tar; do
  ctr -n k8s.io images import "$f" >/dev/null
done
`

const importUnit = `[Unit]
Description=kubeedgeworld image import
After=containerd.service
Requires=containerd.service
Before=edgecore.service kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kubeedgeworld-import-images
[Install]
WantedBy=multi-user.target
`

// edgecoreUnit is KubeEdge's edgecore unit as keadm join writes it
// (keadm/cmd/keadm/app/cmd/util/extsystem/simple.service): Restart=always,
// KillMode=process so a keadm started from edgecore's pods survives
// `systemctl stop edgecore`.
const edgecoreUnit = `[Unit]
Description=edgecore.service
After=network.target containerd.service kubeedgeworld-import-images.service
Wants=containerd.service kubeedgeworld-import-images.service

[Service]
Type=simple
ExecStart=/usr/local/bin/edgecore
Restart=always
RestartSec=10
KillMode=process

[Install]
WantedBy=multi-user.target
`

// containerdConfig has the settings found by failure (see docs/kubeedge.md).
const containerdConfig = `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "` + PauseImage + `"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
` + containerdRegistryConfig

// cniConflist is the pod network of one machine, on subnet %[1]s. No
// masquerading: the host routes each kubelet node's subnet to it, so the
// apiserver reaches its pods (Service proxy) and they answer from their own
// addresses.
const cniConflist = `{
  "cniVersion": "0.4.0",
  "name": "kubeedgeworld",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "%[1]s"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// edgePodSubnet is the edge nodes' pod network. Their upgrade pods use the
// host network, so nothing routes to it.
const edgePodSubnet = "10.88.0.0/16"

// rootfsFile is one file written into a machine's rootfs.
type rootfsFile struct {
	path string
	data string
	mode os.FileMode
}

// rootfsRole is what makes a machine an edge node or a kubelet node: its
// own files, binaries and services, and its pod subnet.
type rootfsRole struct {
	files     []rootfsFile
	binaries  map[string]string // path in the machine => host file
	units     []string          // in /etc/systemd/system, enabled for multi-user.target
	podSubnet string
}

// edgeRole is a KubeEdge edge node: edgecore as keadm join installs it.
// keadm join also leaves its own keadm in /usr/local/bin; the world leaves
// it out, because nothing runs it (the runner runs the job's keadm, from the
// installation package) and building the node version's keadm costs
// minutes.
func edgeRole(edgecore string, edgecoreYAML []byte) rootfsRole {
	return rootfsRole{
		files: []rootfsFile{
			{"/etc/systemd/system/edgecore.service", edgecoreUnit, 0o644},
			{"/etc/kubeedge/config/edgecore.yaml", string(edgecoreYAML), 0o644},
		},
		binaries:  map[string]string{"/usr/local/bin/edgecore": edgecore},
		units:     []string{"edgecore.service"},
		podSubnet: edgePodSubnet,
	}
}

// ContainerdSocket is the CRI socket inside every node.
const ContainerdSocket = "unix:///run/containerd/containerd.sock"

// prepareRootfs unpacks the cached rootfs tarball and writes the node's
// files into it: the ones every machine has, then its role's; images are
// hard-linked (or copied) into it for the import unit.
func prepareRootfs(tarball string, n *Node, gateway string, role rootfsRole, images []string) error {
	if err := os.MkdirAll(n.rootfs, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("tar", "-C", n.rootfs, "--numeric-owner", "-xf", tarball).CombinedOutput(); err != nil {
		return fmt.Errorf("unpack %s: %w: %s", tarball, err, out)
	}
	files := []rootfsFile{
		{"/etc/hostname", n.name + "\n", 0o644},
		{"/etc/hosts", "127.0.0.1 localhost\n" + n.ip + " " + n.name + "\n" + gateway + " " + RegistryHost + "\n", 0o644},
		{"/etc/resolv.conf", "", 0o644},
		{"/usr/local/sbin/kubeedgeworld-prep", fmt.Sprintf(prepScript, n.ip, gateway), 0o755},
		{"/etc/systemd/system/kubeedgeworld-prep.service", prepUnit, 0o644},
		{"/usr/local/sbin/kubeedgeworld-import-images", importScript, 0o755},
		{"/etc/systemd/system/kubeedgeworld-import-images.service", importUnit, 0o644},
		{"/etc/containerd/config.toml", containerdConfig, 0o644},
		{"/etc/cni/net.d/10-kubeedgeworld.conflist", fmt.Sprintf(cniConflist, role.podSubnet), 0o644},
	}
	for _, f := range append(files, role.files...) {
		p := n.HostPath(f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p) // /etc/resolv.conf may be a symlink
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	for _, u := range append([]string{"kubeedgeworld-prep.service", "kubeedgeworld-import-images.service", "containerd.service"}, role.units...) {
		link := n.HostPath("/etc/systemd/system/multi-user.target.wants/" + u)
		_ = os.Remove(link)
		target := "/etc/systemd/system/" + u
		if u == "containerd.service" {
			target = "/lib/systemd/system/" + u
		}
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	// Units a test machine does not need and that cost boot time or CPU.
	for _, u := range []string{"timers.target.wants/apt-daily.timer", "timers.target.wants/apt-daily-upgrade.timer",
		"timers.target.wants/dpkg-db-backup.timer", "timers.target.wants/e2scrub_all.timer", "timers.target.wants/fstrim.timer",
		"multi-user.target.wants/e2scrub_reap.service", "getty.target.wants/getty@tty1.service"} {
		_ = os.Remove(n.HostPath("/etc/systemd/system/" + u))
	}
	for dst, src := range role.binaries {
		if err := copyFile(src, n.HostPath(dst), 0o755); err != nil {
			return err
		}
	}
	imgDir := n.HostPath("/var/lib/kubeedgeworld/images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	for _, img := range images {
		dst := filepath.Join(imgDir, filepath.Base(img))
		if err := os.Link(img, dst); err != nil {
			if err := copyFile(img, dst, 0o644); err != nil {
				return err
			}
		}
	}
	for _, d := range []string{"/var/lib/kubeedge", "/var/log/kubeedge", "/etc/kubeedge/ca", "/etc/kubeedge/certs"} {
		if err := os.MkdirAll(n.HostPath(d), 0o755); err != nil {
			return err
		}
	}
	// An empty machine-id lets systemd make a transient one at each boot.
	_ = os.WriteFile(n.HostPath("/etc/machine-id"), nil, 0o444)
	return nil
}

// copyFile copies src to dst (a new file, never a hard link: keadm writes
// the node's /usr/local/bin/edgecore in place).
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
