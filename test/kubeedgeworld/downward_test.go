//go:build kubeedge

package kubeedgeworld_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestPodAnnotationsReachTheNode: a pod annotation set from the cloud
// reaches a running container on a real edge node through a downwardAPI
// volume: edgecore's kubelet rewrites the file after the pod's update. A
// confirmation given from the cloud reaches the waiting upgrade pod this
// way (pkg/runner, the confirm step). Measured: the time from the patch to
// the container seeing it.
func TestPodAnnotationsReachTheNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	w := kubeedgeworld.StartT(t, ctx, kubeedgeworld.Options{Nodes: 1})
	cs := w.Cluster.Clientset
	node := w.Nodes()[0].Name()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "downward", Namespace: "default", Annotations: map[string]string{"example.com/go": "no"}},
		Spec: corev1.PodSpec{
			NodeName:      node,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            "wait",
				Image:           kubeedgeworld.RunnerImage,
				Command:         []string{"/bin/sh", "-c", `trap 'exit 1' TERM; until grep -q 'example.com/go="yes"' /podinfo/annotations; do sleep 0.2; done`},
				VolumeMounts:    []corev1.VolumeMount{{Name: "podinfo", MountPath: "/podinfo"}},
				ImagePullPolicy: corev1.PullIfNotPresent,
			}},
			Volumes: []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}}},
			}}}},
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodRunning {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pod never ran: %+v", p.Status)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	patched := time.Now()
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, pod.Name, types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"example.com/go":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodSucceeded {
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Terminated != nil {
					t.Logf("the container saw the annotation %s after the patch (its end reported %s after)",
						c.State.Terminated.FinishedAt.Sub(patched).Round(100*time.Millisecond), time.Since(patched).Round(100*time.Millisecond))
				}
			}
			return
		}
		if p.Status.Phase == corev1.PodFailed || ctx.Err() != nil {
			t.Fatalf("pod %s: %+v", p.Status.Phase, p.Status)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
