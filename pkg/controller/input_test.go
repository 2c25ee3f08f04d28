package controller

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

func TestCheckImage(t *testing.T) {
	r := &Reconciler{opts: Options{AllowedImageRepositories: []string{"docker.io/kubeedge/installation-package", "registry.example.com/kubeedge/"}}}
	for _, tc := range []struct {
		image, version string
		wantImage      string
		wantRefusal    string // substring; "" means accepted
	}{
		{"", "v1.22.0", "docker.io/kubeedge/installation-package:v1.22.0", ""},
		{"kubeedge/installation-package:v1.0.0", "v1.22.0", "docker.io/kubeedge/installation-package:v1.22.0", ""},
		{"registry.example.com/kubeedge/installation-package", "v1.22.0", "registry.example.com/kubeedge/installation-package:v1.22.0", ""},
		{"evil.example/kubeedge/installation-package", "v1.22.0", "", `image repository "evil.example/kubeedge/installation-package" is not allowed`},
		{"kubeedge/pkg;rm -rf /", "v1.22.0", "", "spec.image: "},
		{"", "1.22.0", "", "spec.version: "},
		// keadm before v1.21 cannot be driven: refused before any pod.
		{"", "v1.20.0", "", "spec.version v1.20.0 is not supported: the installation package's keadm must be a v1 release from v1.21.0 on"},
		{"", "v1.19.9-rc.1", "", "from v1.21.0 on"},
		{"", "v2.0.0", "", "must be a v1 release"},
		{"", "v1.21.0", "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"", "v1.23.1", "docker.io/kubeedge/installation-package:v1.23.1", ""},
		{"", "v1.99.0", "docker.io/kubeedge/installation-package:v1.99.0", ""},
	} {
		t.Run(tc.image+"@"+tc.version, func(t *testing.T) {
			g := NewWithT(t)
			job := &v1alpha1.NodeUpgradeJob{Spec: v1alpha1.NodeUpgradeJobSpec{Image: tc.image, Version: tc.version}}
			image, refusal := r.checkImage(job)
			if tc.wantRefusal == "" {
				g.Expect(refusal).To(BeEmpty())
				g.Expect(image).To(Equal(tc.wantImage))
				return
			}
			g.Expect(refusal).To(ContainSubstring(tc.wantRefusal))
			g.Expect(image).To(BeEmpty(), "a refused job gets no image to create pods with")
		})
	}
}

// Per-node events of large jobs would cost the API server more than the
// upgrades: above perNodeEventLimit only warnings and progress are recorded,
// below it progress is left out (every node has its event), and a long
// message is cut to what events.k8s.io accepts.
func TestRecordEventsAtScale(t *testing.T) {
	record := func(nodes int, evs []rollout.Event) []string {
		rec := events.NewFakeRecorder(100)
		r := &Reconciler{recorder: rec}
		job := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: "job"}}
		job.Status.NodeStatus = make([]v1alpha1.TaskStatus, nodes)
		r.recordEvents(job, evs)
		close(rec.Events)
		var out []string
		for e := range rec.Events {
			out = append(out, e)
		}
		return out
	}
	evs := []rollout.Event{
		{Reason: rollout.ReasonDispatched, Node: "n1", Message: "Node n1 dispatched"},
		{Warning: true, Reason: rollout.ReasonNodeFailed, Node: "n2", Message: "Node n2 failed: " + strings.Repeat("x", 2000)},
		{Reason: rollout.ReasonProgress, Message: "Progress 10%"},
	}
	g := NewWithT(t)
	small := record(10, evs)
	g.Expect(small).To(HaveLen(2))
	g.Expect(small[0]).To(Equal("Normal Dispatched Node n1 dispatched"))
	g.Expect(len(small[1])).To(BeNumerically("<=", len("Warning NodeFailed ")+maxEventNote))

	large := record(perNodeEventLimit+1, evs)
	g.Expect(large).To(HaveLen(2))
	g.Expect(large[0]).To(HavePrefix("Warning NodeFailed Node n2 failed"))
	g.Expect(large[1]).To(Equal("Normal Progress Progress 10%"))
}
