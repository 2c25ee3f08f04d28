package kubeedgeworld

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

// The world's registry: Debian's docker-registry (distribution's registry
// 2.8.2), over TLS with a CA of the world's own, on the bridge's address,
// which the nodes know as RegistryHost (their /etc/hosts). Two instances:
// one open, for the runner image, and one with basic auth, for the
// installation packages, so that a pod pulls from both and needs its pull
// secret for one of them, as a cluster with a private mirror of KubeEdge's
// images does. Nodes pull; nothing but the pause image and Options'
// ExtraImages is imported.
const (
	// RegistryHost is the registry's name in the nodes and in its
	// certificate.
	RegistryHost = "registry.kubeedgeworld.test"
	// OpenRegistry serves the runner image to anyone.
	OpenRegistry = RegistryHost + ":5000"
	// AuthRegistry serves the installation packages with basic auth.
	AuthRegistry = RegistryHost + ":5001"
	// RegistryUser and RegistryPassword are AuthRegistry's only account.
	RegistryUser     = "kubeedge-mirror"
	RegistryPassword = "world-pass-1"
	// RegistrySecret is the dockerconfigjson Secret in the controller's
	// namespace holding that account, which the world's controller names
	// in --image-pull-secrets.
	RegistrySecret = "kubeedgeworld-registry"
	// registryCAPath is where the nodes' containerd finds the CA.
	registryCAPath = "/etc/kubeedgeworld/registry-ca.crt"
)

// containerdRegistryConfig trusts the world's CA for both registries (CRI
// plugin, containerd 1.6). Credentials come from each pod's pull secret.
const containerdRegistryConfig = `  [plugins."io.containerd.grpc.v1.cri".registry.configs."` + OpenRegistry + `".tls]
    ca_file = "` + registryCAPath + `"
  [plugins."io.containerd.grpc.v1.cri".registry.configs."` + AuthRegistry + `".tls]
    ca_file = "` + registryCAPath + `"
`

// registry is one docker-registry process of the world.
type registry struct {
	name, addr, dir, config string
	auth                    bool
	proc                    *hostProcess
}

// registries is the world's pair and what they share.
type registries struct {
	caPEM  []byte
	open   *registry
	authed *registry
	client *http.Client
}

// startRegistries makes the CA, the certificate and the htpasswd file and
// starts both registries on the gateway's address.
func (w *World) startRegistries(ctx context.Context) (err error) {
	dir := filepath.Join(w.dir, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	caPEM, certPEM, keyPEM, err := registryCerts(w.gateway)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"ca.crt": caPEM, "server.crt": certPEM, "server.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	// distribution's htpasswd auth reads bcrypt only.
	out, err := exec.CommandContext(ctx, "htpasswd", "-Bbn", RegistryUser, RegistryPassword).Output()
	if err != nil {
		return fmt.Errorf("htpasswd (apache2-utils): %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o600); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	w.registries = &registries{caPEM: caPEM, client: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: RegistryHost, MinVersion: tls.VersionTLS12},
	}}}
	w.registries.open = &registry{name: "registry-open", addr: w.gateway + ":5000", dir: filepath.Join(dir, "open")}
	w.registries.authed = &registry{name: "registry-auth", addr: w.gateway + ":5001", dir: filepath.Join(dir, "auth"), auth: true}
	for _, r := range []*registry{w.registries.open, w.registries.authed} {
		if err := r.writeConfig(dir); err != nil {
			return err
		}
		if err := w.startRegistry(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func (r *registry) writeConfig(certDir string) error {
	if err := os.MkdirAll(filepath.Join(r.dir, "data"), 0o755); err != nil {
		return err
	}
	auth := ""
	if r.auth {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: kubeedgeworld\n    path: %s\n", filepath.Join(certDir, "htpasswd"))
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  tls:
    certificate: %s
    key: %s
%s`, filepath.Join(r.dir, "data"), r.addr, filepath.Join(certDir, "server.crt"), filepath.Join(certDir, "server.key"), auth)
	r.config = filepath.Join(r.dir, "config.yml")
	return os.WriteFile(r.config, []byte(cfg), 0o600)
}

// startRegistry starts r and waits until it answers /v2/.
func (w *World) startRegistry(ctx context.Context, r *registry) (err error) {
	if r.proc, err = startHostProcess(r.name, "/usr/bin/docker-registry", r.dir, filepath.Join(r.dir, "registry.log"), "serve", r.config); err != nil {
		return err
	}
	w.Cluster.AdoptProcessGroup(r.proc.cmd.Process.Pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := w.registries.client.Get("https://" + r.addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK || (r.auth && resp.StatusCode == http.StatusUnauthorized) {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if perr := r.proc.running(); perr != nil {
			return perr
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering on %s: %w", r.name, r.addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StopAuthRegistry stops the registry of the installation packages, as a
// registry that is down; StartAuthRegistry brings it back with the same
// content.
func (w *World) StopAuthRegistry() error {
	err := w.registries.authed.proc.stop()
	w.logf("registry %s stopped", AuthRegistry)
	return err
}

// StartAuthRegistry starts the registry StopAuthRegistry stopped.
func (w *World) StartAuthRegistry(ctx context.Context) error {
	if err := w.startRegistry(ctx, w.registries.authed); err != nil {
		return err
	}
	w.logf("registry %s started again", AuthRegistry)
	return nil
}

func (rs *registries) stop() error {
	if rs == nil {
		return nil
	}
	return errors.Join(rs.open.proc.stop(), rs.authed.proc.stop())
}

// push pushes an OCI layout tarball as ref (one of the two registries').
func (w *World) push(ctx context.Context, file, ref string) error {
	r, user, pass, repo, tag := w.registryOf(ref)
	start := time.Now()
	err := imagebuild.PushOCI(ctx, imagebuild.Registry{Base: "https://" + r.addr, Client: w.registries.client, User: user, Password: pass}, file, repo, tag)
	if err == nil {
		w.logf("pushed %s in %.1fs", ref, time.Since(start).Seconds())
	}
	return err
}

// registryOf parts ref (<registry>/<repo>:<tag>, one of the world's two
// registries) into the registry, its account ("" for the open one), the
// repository and the tag.
func (w *World) registryOf(ref string) (r *registry, user, pass, repo, tag string) {
	r = w.registries.open
	if strings.HasPrefix(ref, AuthRegistry+"/") {
		r, user, pass = w.registries.authed, RegistryUser, RegistryPassword
	}
	host, _, _ := strings.Cut(ref, "/")
	rest := strings.TrimPrefix(ref, host+"/")
	i := strings.LastIndex(rest, ":")
	return r, user, pass, rest[:i], rest[i+1:]
}

// createPullSecret writes RegistrySecret in the controller's namespace:
// the account of AuthRegistry, as `kubectl create secret docker-registry`
// would.
func (w *World) createPullSecret(ctx context.Context, user, password string) error {
	data, err := dockerConfigJSON(user, password)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: RegistrySecret, Namespace: localcluster.DefaultNamespace},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	secrets := w.Cluster.Clientset.CoreV1().Secrets(localcluster.DefaultNamespace)
	if _, err := secrets.Get(ctx, RegistrySecret, metaGet); err == nil {
		_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{})
		return err
	}
	_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
	return err
}

// SetPullSecretPassword rewrites RegistrySecret with another password (a
// wrong credential, say).
func (w *World) SetPullSecretPassword(ctx context.Context, password string) error {
	return w.createPullSecret(ctx, RegistryUser, password)
}

func dockerConfigJSON(user, password string) ([]byte, error) {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return json.Marshal(map[string]any{"auths": map[string]any{
		AuthRegistry: map[string]string{"username": user, "password": password, "auth": auth},
	}})
}

// registryCerts makes a CA and the registries' serving certificate for
// RegistryHost and the gateway's address.
func registryCerts(gateway string) (caPEM, certPEM, keyPEM []byte, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubeedgeworld registry CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: RegistryHost},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{RegistryHost}, IPAddresses: []net.IP{net.ParseIP(gateway)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	return pemOf("CERTIFICATE", caDER), pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", keyDER), nil
}

// ManifestDigest asks the world's registry for ref's digest (ref as the
// nodes pull it: <registry>/<repo>:<tag>): the digest the registry serves
// for the tag (an OCI index for a multi-platform package), or with arch
// the digest of that platform's manifest in the index, as KubeEdge's
// v1alpha2 imageDigestGatter.amd64 and arm64 give it.
func (w *World) ManifestDigest(ctx context.Context, ref, arch string) (string, error) {
	r, user, pass, repo, tag := w.registryOf(ref)
	url := "https://" + r.addr + "/v2/" + repo + "/manifests/" + tag
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "+
		"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := w.registries.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if arch == "" {
		return resp.Header.Get("Docker-Content-Digest"), nil
	}
	var index struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				Architecture string `json:"architecture"`
				OS           string `json:"os"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&index); err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	for _, m := range index.Manifests {
		if m.Platform.OS == "linux" && m.Platform.Architecture == arch {
			return m.Digest, nil
		}
	}
	return "", fmt.Errorf("%s has no linux/%s manifest", ref, arch)
}

// ControllerRegistryAccess writes, into the world's folder, what a
// controller on the host reads the installation packages' registry with
// (--registry-ca-file, --registry-credentials-file), and returns the
// registry's address as the host reaches it: the gateway's address, which
// its certificate names beside RegistryHost (the host cannot resolve that
// name; the nodes can). To the controller it is a mirror of AuthRegistry:
// the same registry under another name.
func (w *World) ControllerRegistryAccess() (host, caFile, credentialsFile string, err error) {
	host = w.registries.authed.addr
	dir := filepath.Join(w.dir, "registry")
	caFile = filepath.Join(dir, "ca.crt")
	auth := base64.StdEncoding.EncodeToString([]byte(RegistryUser + ":" + RegistryPassword))
	data, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	if err != nil {
		return "", "", "", err
	}
	credentialsFile = filepath.Join(dir, "controller-config.json")
	return host, caFile, credentialsFile, os.WriteFile(credentialsFile, data, 0o600)
}
