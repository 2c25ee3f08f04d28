//go:build kubeedge

package kubeedge

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestDigestPinnedJob: spec.imageDigestGatter on a real node. A job whose
// digest the registry does not have for the package fails the node before
// anything on it changes, naming the digest; a job pinned by the digest
// the registry serves for the node's platform upgrades the node with the
// package pulled by digest, as the node's containerd shows: the kubelet
// pulled <repo>@<digest>, and the tag keadm reads names that image.
func TestDigestPinnedJob(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	t.Cleanup(cancel)
	w := kubeedgeworld.StartT(t, ctx, kubeedgeworld.Options{Nodes: 1})
	// The controller reads digests from the world's real registry (Debian's
	// docker-registry) under the address the host reaches it by, a mirror
	// of the nodes' registry to the controller, with its own credentials.
	mirror, caFile, credentials, err := w.ControllerRegistryAccess()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.StartController(ctx, "--registry-ca-file="+caFile, "--registry-credentials-file="+credentials,
		"--allowed-image-repositories="+kubeedgeworld.InstallPackageRepo+","+mirror+"/kubeedge/"); err != nil {
		t.Fatalf("start controller: %v", err)
	}
	n := w.Nodes()[0]
	before := snapshot(t, ctx, w, n)
	ref := kubeedgeworld.InstallPackageRepo + ":" + toVersion
	digest, err := w.ManifestDigest(ctx, ref, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the registry's %s manifest of %s: %s", runtime.GOARCH, ref, digest)

	wrong := "sha256:" + strings.Repeat("e", 64)
	jw := watchJob(ctx, w.Cluster.Client, "digest-wrong")
	job := newJob("digest-wrong", toVersion, []string{n.Name()}, 1, nil)
	job.Spec.ImageDigestGatter = &v1alpha1.ImageDigestGatter{AMD64: wrong, ARM64: wrong}
	start := time.Now()
	if err := w.Cluster.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	final := jw.waitFinal(t, ctx, jobTimeout)
	jw.stop()
	ns := final.Status.NodeStatus[0]
	t.Logf("wrong digest: %s in %s: %s/%s %q", final.Status.State, time.Since(start).Round(time.Second), ns.Event, ns.Action, ns.Reason)
	if final.Status.State != v1alpha1.StateFailed || ns.Event != v1alpha1.EventInit || !strings.Contains(ns.Reason, wrong) {
		t.Errorf("want the node Failed in Init naming the digest: %+v", ns)
	}
	now := snapshot(t, ctx, w, n)
	if len(now.starts) != len(before.starts) || now.binSum != before.binSum {
		t.Errorf("edgecore touched by a job whose digest did not match: starts %d -> %d, binary changed %v",
			len(before.starts), len(now.starts), now.binSum != before.binSum)
	}
	if _, err := n.ReadFile("/etc/kubeedge/upgrade_report.json"); err == nil {
		t.Errorf("keadm ran for a job whose digest did not match")
	}
	waitPodsGone(t, ctx, w, n.Name(), 5*time.Minute)

	// Pinned twice over: the spec's amd64 digest, and registryAPI, which
	// the controller resolves from the registry before the node starts;
	// the two agree.
	jw = watchJob(ctx, w.Cluster.Client, "digest")
	defer jw.stop()
	job = newJob("digest", toVersion, []string{n.Name()}, 1, nil)
	job.Spec.ImageDigestGatter = &v1alpha1.ImageDigestGatter{AMD64: digest, RegistryAPI: &v1alpha1.RegistryAPI{Host: mirror}}
	if err := w.Cluster.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	final = jw.waitFinal(t, ctx, jobTimeout)
	if final.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("pinned job %s: %+v", final.Status.State, final.Status)
	}
	resolved := final.Status.ResolvedImageDigests
	tagDigest, err := w.ManifestDigest(ctx, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("digests the controller read from %s: %+v", mirror, resolved)
	if resolved == nil || resolved.AMD64 != digest || resolved.Tag != tagDigest || resolved.Image != mirror+"/kubeedge/installation-package:"+toVersion {
		t.Errorf("status.resolvedImageDigests %+v, want amd64 %s and tag %s from %s", resolved, digest, tagDigest, mirror)
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+toVersion, n.Name()); err != nil {
		t.Fatal(err)
	}
	pinned := kubeedgeworld.InstallPackageRepo + "@" + digest
	// What the controller asked for and what the node ran: copy-keadm's
	// image is the pinned reference, and the image ID the kubelet reports
	// for it (containerd's first repo digest) carries the same digest. The
	// containerd journal's PullImage line is logged, not asserted: under a
	// full suite's load a machine's journal has missed it while the image
	// store and the pod both showed the pull by digest.
	ran := jw.containerImages(runner.ContainerCopyKeadm)
	t.Logf("copy-keadm ran: %v; containerd journal PullImage lines for %s: %d", ran, pinned,
		len(containerdLines(ctx, n, "PullImage", pinned)))
	sawPinnedRun := false
	for _, r := range ran {
		specImage, imageID, _ := strings.Cut(r, " -> ")
		if specImage != pinned {
			t.Errorf("copy-keadm ran %s, not the pinned %s", specImage, pinned)
		}
		if strings.HasSuffix(imageID, "@"+digest) {
			sawPinnedRun = true
		}
	}
	if !sawPinnedRun {
		t.Errorf("the node's kubelet never reported copy-keadm running an image of digest %s: %v", digest, ran)
	}
	images := n.Exec(ctx, "ctr", "--namespace", "k8s.io", "images", "ls")
	t.Logf("the node's images:\n%s", images.Stdout)
	var sawPinned, sawTag bool
	for _, line := range strings.Split(images.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		sawPinned = sawPinned || f[0] == pinned
		if f[0] == ref {
			sawTag = true
			if f[2] != digest {
				t.Errorf("%s names %s on the node, not the pinned %s", ref, f[2], digest)
			}
		}
	}
	if !sawPinned || !sawTag {
		t.Errorf("the node's containerd lacks %s (%v) or %s (%v)", pinned, sawPinned, ref, sawTag)
	}
	after := snapshot(t, ctx, w, n)
	if after.binSum != fileSumOf(t, kubeedgeworld.BinaryPath(toVersion, "edgecore")) {
		t.Errorf("/usr/local/bin/edgecore is not the %s binary", toVersion)
	}
	waitPodsGone(t, ctx, w, n.Name(), 5*time.Minute)
}
