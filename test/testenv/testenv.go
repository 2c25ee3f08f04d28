// Package testenv starts the project's test control plane: a real etcd and
// kube-apiserver, built from the Go module proxy into bin/ by `make tools`,
// run by controller-runtime's envtest with the project's CRDs installed.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	operationsv1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// RepoRoot is the checkout's top folder, found from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Scheme knows the core Kubernetes types and NodeUpgradeJob.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := operationsv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// AssetsDir is the folder holding etcd and kube-apiserver. KUBEBUILDER_ASSETS
// (set by the Makefile) wins; otherwise the newest pinned folder in bin/.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "k8s-*-etcd-*"))
	for i := len(matches) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(matches[i], "kube-apiserver")); err == nil {
			return matches[i], nil
		}
	}
	return "", fmt.Errorf("no control plane binaries in bin/: run `make tools` first")
}

// New returns an envtest environment with the project's CRDs, not yet started.
func New() (*envtest.Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}, nil
}

// RESTClientFor returns a client for raw requests on exact REST paths, as
// the seed API reference lists them.
func RESTClientFor(cfg *rest.Config) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &operationsv1alpha1.GroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(Scheme()).WithoutConversion()
	return rest.RESTClientFor(c)
}
