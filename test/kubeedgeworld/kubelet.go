package kubeedgeworld

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// The world's kubelet nodes make it a real cluster for the controller's own
// Deployment: kube-scheduler and kube-controller-manager run on the host
// next to the apiserver, and each kubelet node is a machine like the edge
// nodes (systemd, containerd) running kubelet and kube-proxy instead of
// edgecore. All four are built from k8s.io/kubernetes at KubeVersion by
// hack/build-tools.sh, like the apiserver.

// KubeVersion is the Kubernetes release of the control plane and of the
// kubelet nodes.
const KubeVersion = "v1.37.2"

// KubeBinary is where hack/build-tools.sh puts a Kubernetes component.
func KubeBinary(name string) string {
	return filepath.Join(testenv.RepoRoot(), "bin", name+"-"+KubeVersion, name)
}

// kubeletPodSubnet is kubelet node i's pod network (i from 1); the host
// routes it to the node.
func kubeletPodSubnet(i int) string { return fmt.Sprintf("10.89.%d.0/24", i) }

const kubeletUnit = `[Unit]
Description=kubelet
After=containerd.service kubeedgeworld-import-images.service
Wants=containerd.service kubeedgeworld-import-images.service

[Service]
ExecStart=/usr/local/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/var/lib/kubelet/kubeconfig --hostname-override=%[1]s --node-ip=%[2]s -v=1
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`

const kubeProxyUnit = `[Unit]
Description=kube-proxy
After=network.target kubeedgeworld-prep.service

[Service]
ExecStart=/usr/local/bin/kube-proxy --config=/var/lib/kube-proxy/config.yaml -v=1
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`

// kubeletConfig is a kubelet on cgroup v1 inside an nspawn machine, as
// edgecore's kubelet runs there: cgroupfs, no swap check, the host's
// sysctls left alone. Its API is reached by the apiserver only (kubectl
// logs, exec), so it allows what it is asked; a real cluster's kubelet
// authenticates the apiserver with webhook authn/authz.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: ` + ContainerdSocket + `
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
protectKernelDefaults: false
# No registry here, and the disk is the host's: nothing may be
# garbage-collected or evicted for space (as for the edge nodes).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.inodesFree: 1%
`

// kubeProxyConfig: iptables mode in the machine's own network namespace;
// conntrack sysctls are the host's, so kube-proxy must not set them.
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig
mode: iptables
hostnameOverride: %[1]s
clusterCIDR: 10.89.0.0/16
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`

// kubeletRole is a kubelet node's rootfs role.
func kubeletRole(n *Node, kubeletKubeconfig, proxyKubeconfig []byte, podSubnet string) rootfsRole {
	return rootfsRole{
		files: []rootfsFile{
			{"/etc/systemd/system/kubelet.service", fmt.Sprintf(kubeletUnit, n.name, n.ip), 0o644},
			{"/etc/systemd/system/kube-proxy.service", kubeProxyUnit, 0o644},
			{"/var/lib/kubelet/config.yaml", kubeletConfig, 0o644},
			{"/var/lib/kubelet/kubeconfig", string(kubeletKubeconfig), 0o600},
			{"/var/lib/kube-proxy/config.yaml", fmt.Sprintf(kubeProxyConfig, n.name), 0o644},
			{"/var/lib/kube-proxy/kubeconfig", string(proxyKubeconfig), 0o600},
		},
		binaries:  map[string]string{"/usr/local/bin/kubelet": KubeBinary("kubelet"), "/usr/local/bin/kube-proxy": KubeBinary("kube-proxy")},
		units:     []string{"kubelet.service", "kube-proxy.service"},
		podSubnet: podSubnet,
	}
}

// startKubeComponents starts kube-scheduler and kube-controller-manager on
// the host, each under its own identity, as a kubeadm control plane runs
// them (the controller manager with one ServiceAccount per controller).
func (w *World) startKubeComponents(ctx context.Context) error {
	dir, err := w.controlPlaneDir()
	if err != nil {
		return err
	}
	schedKubeconfig, err := w.Cluster.UserKubeconfig("system:kube-scheduler")
	if err != nil {
		return err
	}
	schedPort, err := freePort()
	if err != nil {
		return err
	}
	if w.scheduler, err = startHostProcess("kube-scheduler", KubeBinary("kube-scheduler"), dir, filepath.Join(dir, "kube-scheduler.log"),
		"--kubeconfig="+schedKubeconfig, "--authentication-kubeconfig="+schedKubeconfig, "--authorization-kubeconfig="+schedKubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+schedPort, "-v=1"); err != nil {
		return err
	}
	w.Cluster.AdoptProcessGroup(w.scheduler.cmd.Process.Pid)
	if err := w.startControllerManager(ctx, "*"); err != nil {
		return err
	}
	// The kubelets' and kube-proxy's rights. A real cluster gives kubelets
	// theirs through the Node authorizer, which envtest's apiserver does not
	// run (RBAC only); system:node is the ClusterRole that stands for it.
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeedgeworld:nodes"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"}},
	}
	if _, err := w.Cluster.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("bind system:node: %w", err)
	}
	w.logf("kube-scheduler %s up", KubeVersion)
	return nil
}

// controlPlaneDir is the folder of the host's control-plane components,
// with the cluster's CA in it.
func (w *World) controlPlaneDir() (string, error) {
	dir := filepath.Join(w.dir, "control-plane")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "ca.crt"), w.Cluster.CAPEM(), 0o644)
}

// startControllerManager starts kube-controller-manager on the host with
// the given controllers. All of them ("*") run as a kubeadm control plane
// runs them: under the controller manager's own identity, one ServiceAccount
// per controller (which needs the ServiceAccount token controller, and with
// it the cluster's CA, served only on the bridge). Any other set (the node
// lifecycle controller alone) runs with the world's admin credentials.
func (w *World) startControllerManager(_ context.Context, controllers string) error {
	dir, err := w.controlPlaneDir()
	if err != nil {
		return err
	}
	kcmPort, err := freePort()
	if err != nil {
		return err
	}
	args := []string{"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=" + kcmPort, "--controllers=" + controllers, "-v=1"}
	if controllers == "*" {
		kubeconfig, err := w.Cluster.UserKubeconfig("system:kube-controller-manager")
		if err != nil {
			return err
		}
		args = append(args, "--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
			"--use-service-account-credentials=true",
			"--root-ca-file="+filepath.Join(dir, "ca.crt"), "--service-account-private-key-file="+w.Cluster.ServiceAccountKeyFile())
	} else {
		kubeconfig := w.Cluster.KubeconfigPath()
		args = append(args, "--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig)
	}
	if w.controllerManager, err = startHostProcess("kube-controller-manager", KubeBinary("kube-controller-manager"), dir,
		filepath.Join(dir, "kube-controller-manager.log"), args...); err != nil {
		return err
	}
	w.Cluster.AdoptProcessGroup(w.controllerManager.cmd.Process.Pid)
	w.logf("kube-controller-manager %s up (controllers %s)", KubeVersion, controllers)
	return nil
}

// startKubeletNodes prepares and boots the kubelet nodes (node-1, ...).
func (w *World) startKubeletNodes(ctx context.Context) error {
	tarball := filepath.Join(testenv.RepoRoot(), "bin", "kubeedge-rootfs-"+RootfsVersion+".tar")
	runID := filepath.Base(w.dir)[len("kubeedgeworld-"):]
	proxyKubeconfig, err := w.Cluster.UserKubeconfig("system:kube-proxy")
	if err != nil {
		return err
	}
	proxyCfg, err := os.ReadFile(proxyKubeconfig)
	if err != nil {
		return err
	}
	for i := 1; i <= w.opts.KubeletNodes; i++ {
		n := &Node{
			name:    fmt.Sprintf("node-%d", i),
			machine: fmt.Sprintf("kew%sk%d", runID[:min(len(runID), 6)], i),
			dir:     filepath.Join(w.dir, "nodes", fmt.Sprintf("node-%d", i)),
			ip:      strings.TrimSuffix(w.gateway, ".1") + fmt.Sprintf(".%d", 100+i),
		}
		n.rootfs = filepath.Join(n.dir, "rootfs")
		n.logPath = filepath.Join(n.dir, "console.log")
		kubeconfig, err := w.Cluster.UserKubeconfig("system:node:"+n.name, "system:nodes")
		if err != nil {
			return err
		}
		kubeletCfg, err := os.ReadFile(kubeconfig)
		if err != nil {
			return err
		}
		subnet := kubeletPodSubnet(i)
		start := time.Now()
		if err := prepareRootfs(tarball, n, w.gateway, kubeletRole(n, kubeletCfg, proxyCfg, subnet), w.images); err != nil {
			return fmt.Errorf("node %s rootfs: %w", n.name, err)
		}
		w.logf("node %s: rootfs ready in %.1fs", n.name, time.Since(start).Seconds())
		// The apiserver reaches the node's pods (Service proxy) and they
		// answer the host, through the node.
		if out, err := exec.Command("ip", "route", "replace", subnet, "via", n.ip, "dev", w.bridge).CombinedOutput(); err != nil {
			return fmt.Errorf("route %s via %s: %w: %s", subnet, n.ip, err, out)
		}
		// Listed before it boots, so that Stop stops it (and removes its
		// cgroups) if the boot fails half-way.
		w.kubeletNodes = append(w.kubeletNodes, n)
		if err := w.bootMachine(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func freePort() (string, error) {
	addr, err := testenv.FreeLocalAddr()
	if err != nil {
		return "", err
	}
	return addr[strings.LastIndex(addr, ":")+1:], nil
}
