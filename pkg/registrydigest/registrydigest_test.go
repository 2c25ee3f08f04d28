package registrydigest

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nodeupgrade/nodeupgrade/test/testregistry"
)

const repo = "kubeedge/installation-package"

func TestResolve(t *testing.T) {
	reg := testregistry.Start()
	defer reg.Close()
	index, images, err := reg.Push(repo, "v1.23.1", "linux/amd64", "linux/arm64/v8", "linux/arm/v7")
	if err != nil {
		t.Fatal(err)
	}
	single, _, err := reg.Push(repo, "amd64-only", "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	creds, err := reg.WriteCredentialsFile(dir, testregistry.Password)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := reg.WriteCAFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{CredentialsFile: creds, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	got, err := r.Resolve(ctx, reg.Host+"/"+repo+":v1.23.1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Tag != index || len(got.ByArch) != 2 || got.ByArch["amd64"] != images["linux/amd64"] || got.ByArch["arm64"] != images["linux/arm64/v8"] {
		t.Errorf("index: got %+v, want tag %s and %v without the arm/v7 image", got, index, images)
	}

	got, err = r.Resolve(ctx, reg.Host+"/"+repo+":amd64-only")
	if err != nil {
		t.Fatal(err)
	}
	if got.Tag != single || len(got.ByArch) != 1 || got.ByArch["amd64"] != single {
		t.Errorf("single image: got %+v, want amd64 %s", got, single)
	}

	if _, err := r.Resolve(ctx, reg.Host+"/"+repo+":v9.9.9"); err == nil || !strings.Contains(err.Error(), "v9.9.9") {
		t.Errorf("a missing tag: %v", err)
	}

	anonymous, err := New(Options{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anonymous.Resolve(ctx, reg.Host+"/"+repo+":v1.23.1"); err == nil || !strings.Contains(strings.ToUpper(err.Error()), "UNAUTHORIZED") {
		t.Errorf("no credentials: want the registry's refusal, got %v", err)
	}

	wrong, err := reg.WriteCredentialsFile(t.TempDir(), "nope")
	if err != nil {
		t.Fatal(err)
	}
	r, err = New(Options{CredentialsFile: wrong, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, reg.Host+"/"+repo+":v1.23.1"); err == nil {
		t.Error("a wrong password resolved")
	}

	// Without the CA the registry's certificate is not trusted: a registry
	// is only ever spoken to over verified TLS.
	untrusting, err := New(Options{CredentialsFile: creds})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.Resolve(ctx, reg.Host+"/"+repo+":v1.23.1"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("an untrusted certificate: %v", err)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRefusesBadFiles(t *testing.T) {
	for name, content := range map[string]string{
		"not json":        `auths: {}`,
		"no auths":        `{"auths":{}}`,
		"auth not base64": `{"auths":{"r.example.com":{"auth":"%%%"}}}`,
		"auth no colon":   `{"auths":{"r.example.com":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("userpass")) + `"}}}`,
		"entry no user":   `{"auths":{"r.example.com":{"password":"p"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(Options{CredentialsFile: writeFile(t, content)}); err == nil {
				t.Errorf("%s accepted", name)
			}
		})
	}
	if _, err := New(Options{CAFile: writeFile(t, "not a certificate")}); err == nil {
		t.Error("a CA file without a certificate accepted")
	}
	if _, err := New(Options{CredentialsFile: filepath.Join(t.TempDir(), "absent")}); err == nil {
		t.Error("an absent credentials file accepted")
	}
}

func TestAuthForDockerHub(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("u:p"))
	r, err := New(Options{CredentialsFile: writeFile(t, `{"auths":{"https://index.docker.io/v1/":{"auth":"`+auth+`"}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{name.DefaultRegistry, "docker.io"} {
		if cfg, ok := r.authFor(host); !ok || cfg.Username != "u" || cfg.Password != "p" {
			t.Errorf("%s: %+v %v", host, cfg, ok)
		}
	}
	if _, ok := r.authFor("registry.example.com"); ok {
		t.Error("Docker Hub's credentials offered to another registry")
	}
}
