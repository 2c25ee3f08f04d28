package kwokworld

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

func TestConfigYAML(t *testing.T) {
	g := NewWithT(t)
	data, err := ConfigYAML(Options{HeartbeatInterval: 4 * time.Second, NodePlayStageParallelism: 8})
	g.Expect(err).NotTo(HaveOccurred())
	text := string(data)
	g.Expect(text).NotTo(ContainSubstring("__"))
	g.Expect(text).To(ContainSubstring("durationMilliseconds: 4000"))
	g.Expect(text).To(ContainSubstring("jitterDurationMilliseconds: 5000"))

	var kinds, names []string
	for doc := range strings.SplitSeq(text, "\n---\n") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Selector struct {
					MatchAnnotations map[string]string `json:"matchAnnotations"`
				} `json:"selector"`
			} `json:"spec"`
		}
		g.Expect(yaml.Unmarshal([]byte(doc), &obj)).To(Succeed(), doc)
		kinds = append(kinds, obj.Kind)
		if obj.Kind == "Stage" {
			names = append(names, obj.Metadata.Name)
			// Only fake nodes: a real node in the same cluster is never touched.
			g.Expect(obj.Spec.Selector.MatchAnnotations).To(HaveKeyWithValue(AnnotationFakeNode, FakeNodeValue))
		}
	}
	g.Expect(kinds).To(ConsistOf("KwokConfiguration", "Stage", "Stage", "Stage"))
	g.Expect(names).To(ConsistOf("node-initialize", "node-heartbeat", "node-offline"))

	data, err = ConfigYAML(Options{HeartbeatInterval: -1})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).NotTo(ContainSubstring("node-heartbeat"))
	g.Expect(string(data)).NotTo(ContainSubstring("KwokConfiguration"))
}

func TestWriteKubeconfig(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	in := &rest.Config{Host: "127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca"), CertData: []byte("cert"), KeyData: []byte("key")}}
	g.Expect(WriteKubeconfig(in, path)).To(Succeed())
	out, err := clientcmd.BuildConfigFromFlags("", path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.Host).To(Equal("https://127.0.0.1:6443"))
	g.Expect(out.CAData).To(Equal([]byte("ca")))
	g.Expect(out.CertData).To(Equal([]byte("cert")))
	g.Expect(out.KeyData).To(Equal([]byte("key")))

	in = &rest.Config{Host: "https://localhost:8443/", BearerToken: "tok", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	g.Expect(WriteKubeconfig(in, path)).To(Succeed())
	out, err = clientcmd.BuildConfigFromFlags("", path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.Host).To(Equal("https://localhost:8443"))
	g.Expect(out.BearerToken).To(Equal("tok"))
	g.Expect(out.Insecure).To(BeTrue())
}

func TestFindBinary(t *testing.T) {
	g := NewWithT(t)
	_, err := findBinary(filepath.Join(t.TempDir(), "missing"))
	g.Expect(err).To(HaveOccurred())
	exe := filepath.Join(t.TempDir(), "kwok")
	g.Expect(os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)).To(Succeed())
	t.Setenv(EnvKwokBinary, exe)
	g.Expect(BinaryPath()).To(Equal(exe))
}
