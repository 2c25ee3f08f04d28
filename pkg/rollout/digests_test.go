package rollout

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func digestOf(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

// amd64Fleet is fleet(n) with every node's kubernetes.io/arch amd64.
func amd64Fleet(n int) map[string]NodeView {
	nodes := fleet(n)
	for name, node := range nodes {
		node.Arch = "amd64"
		nodes[name] = node
	}
	return nodes
}

// The registry's digests fill the architectures the spec leaves open; a
// spec digest the registry contradicts stops that architecture's nodes
// naming both digests; v1alpha1's value must be the tag's or an image's.
func TestApplyResolvedDigests(t *testing.T) {
	index, amd, arm, other := digestOf('1'), digestOf('a'), digestOf('b'), digestOf('f')
	resolved := &v1alpha1.ResolvedImageDigests{Image: "r.example.com/kubeedge/installation-package:v1.23.1", Tag: index, AMD64: amd, ARM64: arm}
	amdOnly := &v1alpha1.ResolvedImageDigests{Image: resolved.Image, Tag: amd, AMD64: amd}
	cases := []struct {
		name     string
		spec     map[string]string
		resolved *v1alpha1.ResolvedImageDigests
		// want: by node architecture, the digest its node is dispatched
		// with, or "fail: <words of the reason>".
		want map[string]string
	}{
		{"nothing resolved yet leaves the spec alone", map[string]string{"amd64": amd}, nil,
			map[string]string{"amd64": amd, "arm64": "fail: not for the node's architecture arm64"}},
		{"registry only", nil, resolved, map[string]string{"amd64": amd, "arm64": arm, "arm": "fail: not for the node's architecture arm"}},
		{"spec and registry agree", map[string]string{"amd64": amd, "arm64": arm}, resolved, map[string]string{"amd64": amd, "arm64": arm}},
		{"spec pins one, registry fills the other", map[string]string{"arm64": arm}, resolved, map[string]string{"amd64": amd, "arm64": arm}},
		{"spec contradicts the registry for amd64", map[string]string{"amd64": other}, resolved,
			map[string]string{"amd64": "fail: spec.imageDigestGatter.amd64 is " + other + ", but the registry serves " + amd, "arm64": arm}},
		{"spec pins an architecture the tag lacks", map[string]string{"arm64": arm}, amdOnly,
			map[string]string{"amd64": amd, "arm64": "fail: spec.imageDigestGatter.arm64 is " + arm + ", but the registry serves no image"}},
		{"value is the tag's digest", map[string]string{"": index}, resolved, map[string]string{"amd64": amd, "arm64": arm, "arm": index}},
		{"value is the amd64 image's", map[string]string{"": amd}, resolved, map[string]string{"amd64": amd, "arm64": arm}},
		{"value the registry does not serve", map[string]string{"": other}, resolved,
			map[string]string{"amd64": "fail: spec.imageDigestGatter.value is " + other + ", but the registry serves " + index,
				"arm64": "fail: value is " + other, "arm": "fail: value is " + other}},
		{"value contradicted, arm64 pinned on its own", map[string]string{"": other, "arm64": arm}, resolved,
			map[string]string{"amd64": "fail: value is " + other, "arm64": arm}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := cfg(10, "1")
			if tc.spec != nil {
				c.ImageDigests = map[string]string{}
				for k, v := range tc.spec {
					c.ImageDigests[k] = v
				}
			}
			c.ApplyResolvedDigests(tc.resolved)
			nodes := map[string]NodeView{}
			var selection []string
			for arch := range tc.want {
				n := edgeNode("v1.20.0")
				n.Arch = arch
				nodes["node-"+arch] = n
				selection = append(selection, "node-"+arch)
			}
			p := start(c, selection, nodes)
			got := map[string]string{}
			for _, d := range p.Dispatch {
				got[strings.TrimPrefix(d.Node, "node-")] = d.ImageDigest
			}
			for arch, want := range tc.want {
				if why, ok := strings.CutPrefix(want, "fail: "); ok {
					e := entry(p, "node-"+arch)
					g.Expect(e.State).To(Equal(v1alpha1.StateFailed), arch)
					g.Expect(e.Event).To(Equal(v1alpha1.EventInit), arch)
					g.Expect(e.Reason).To(ContainSubstring(why), arch)
					g.Expect(e.Reason).To(HavePrefix("nothing was run"), arch)
					continue
				}
				g.Expect(got[arch]).To(Equal(want), arch)
			}
		})
	}
}

// A job whose digests come from a registry starts no node until they are
// read, shows why, and gives the wait no node's clock: once read, nodes
// start with the whole timeout ahead.
func TestUnresolvedDigestsHoldEveryNode(t *testing.T) {
	g := NewWithT(t)
	c := cfg(2, "1")
	c.DigestsUnresolved = "reading the install image's digests from r.example.com: connection refused"
	nodes := amd64Fleet(3)
	p := start(c, names(3), nodes)
	g.Expect(p.Dispatch).To(BeEmpty())
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateUpgrading))
	g.Expect(p.Status.Reason).To(ContainSubstring("connection refused"))
	g.Expect(p.Status.Reason).To(ContainSubstring("3 pending"))
	for _, e := range p.Status.NodeStatus {
		g.Expect(e.State).To(Equal(v1alpha1.StateNone))
		g.Expect(e.Time).To(BeEmpty(), "no clock runs for a node the job holds")
	}
	later := step(p, c, nodes, nil, t0.Add(c.Timeout*3))
	g.Expect(later.Dispatch).To(BeEmpty())
	g.Expect(later.Status.Counts.Failed).To(BeZero(), "waiting for digests fails no node")

	c.DigestsUnresolved = ""
	c.ApplyResolvedDigests(&v1alpha1.ResolvedImageDigests{Tag: digestOf('1'), AMD64: digestOf('a')})
	later = step(later, c, nodes, nil, t0.Add(c.Timeout*3))
	g.Expect(later.Dispatch).To(HaveLen(2))
	g.Expect(later.Dispatch[0].ImageDigest).To(Equal(digestOf('a')))
	g.Expect(later.Dispatch[0].Deadline).To(Equal(t0.Add(c.Timeout * 4)))
}

// A job that stages and reads its digests from a registry stages nothing
// until they are read, then stages each node by its architecture's digest,
// the one it will be upgraded with.
func TestStagingWaitsForRegistryDigests(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	c.PreStage = &StageConfig{Concurrency: 2}
	c.DigestsUnresolved = "waiting for the install image's digests from r.example.com"
	nodes := amd64Fleet(2)
	p := start(c, names(2), nodes)
	g.Expect(p.Stage).To(BeEmpty(), "no stage pod pulls by tag before the digests are read")

	c.DigestsUnresolved = ""
	c.ApplyResolvedDigests(&v1alpha1.ResolvedImageDigests{Tag: digestOf('1'), AMD64: digestOf('a')})
	p = step(p, c, nodes, nil, t0.Add(time.Second))
	g.Expect(p.Stage).To(HaveLen(2))
	for _, s := range p.Stage {
		g.Expect(s.ImageDigest).To(Equal(digestOf('a')), s.Node)
	}
}
