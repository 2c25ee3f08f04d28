package localcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// kubernetesServiceIP is the first address of envtest's
// --service-cluster-ip-range (10.0.0.0/24): the `kubernetes` Service, which
// in-cluster clients dial and whose name the serving certificate must carry.
const kubernetesServiceIP = "10.0.0.1"

// writeServingCerts writes into certDir what envtest would otherwise make
// for loopback only: a CA, the apiserver's serving certificate for
// localhost, 127.0.0.1, serveOn and the `kubernetes` Service (IP and DNS
// names), and the service-account signing key. It returns the CA in PEM.
// The file names are the ones envtest's APIServer looks for, so it uses
// these instead of generating its own.
func writeServingCerts(certDir, serveOn string) ([]byte, error) {
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localcluster-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(kubernetesServiceIP)}
	if ip := net.ParseIP(serveOn); ip != nil {
		ips = append(ips, ip)
	} else {
		return nil, fmt.Errorf("localcluster: ServeOn %q is not an IP address", serveOn)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caPEM := pemBlock("CERTIFICATE", caDER)
	files := map[string][]byte{
		"apiserver.crt": append(pemBlock("CERTIFICATE", der), caPEM...),
		"apiserver.key": mustECKey(key),
		"ca.crt":        caPEM,
		"sa-signer.key": mustECKey(saKey),
		"sa-signer.crt": mustPublicKey(saKey),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustECKey(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pemBlock("EC PRIVATE KEY", der)
}

// mustPublicKey is the service-account verification key: kube-apiserver's
// --service-account-key-file takes a PEM public key (or certificate).
func mustPublicKey(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		panic(err)
	}
	return pemBlock("PUBLIC KEY", der)
}
