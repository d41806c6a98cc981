package memcachedtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLS holds the certificates of a memcached started with Options.TLS,
// generated when the test runs: a certificate authority, the server's
// certificate (for 127.0.0.1) and a client certificate, all signed by it.
type TLS struct {
	// CA is the certificate authority's certificate.
	CA *x509.Certificate
	// CAPool holds CA alone, for tls.Config.RootCAs.
	CAPool *x509.CertPool
	// ClientCert is a client certificate signed by CA, for mutual TLS.
	ClientCert tls.Certificate

	caKey                     *ecdsa.PrivateKey
	certFile, keyFile, caFile string
}

// ClientConfig returns a tls.Config that trusts the server's certificate
// and, with clientCert, presents TLS.ClientCert (mutual TLS).
func (c *TLS) ClientConfig(clientCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: c.CAPool, MinVersion: tls.VersionTLS12}
	if clientCert {
		cfg.Certificates = []tls.Certificate{c.ClientCert}
	}
	return cfg
}

// UntrustedClientCert returns a client certificate signed by a different
// authority: a server that requires client certificates refuses it.
func (c *TLS) UntrustedClientCert(t testing.TB) tls.Certificate {
	t.Helper()
	other := newTLS(t, t.TempDir())
	return other.ClientCert
}

// newTLS generates the certificates into dir.
func newTLS(t testing.TB, dir string) *TLS {
	t.Helper()
	caKey := genKey(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "memcachedtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	c := &TLS{CA: ca, CAPool: x509.NewCertPool(), caKey: caKey}
	c.CAPool.AddCert(ca)

	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) ([]byte, *ecdsa.PrivateKey) {
		key := genKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	serverDER, serverKey := leaf(2, x509.ExtKeyUsageServerAuth, "memcached")
	clientDER, clientKey := leaf(3, x509.ExtKeyUsageClientAuth, "app server")
	c.ClientCert = tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}

	c.certFile = filepath.Join(dir, "server.pem")
	c.keyFile = filepath.Join(dir, "server.key")
	c.caFile = filepath.Join(dir, "ca.pem")
	writePEM(t, c.certFile, "CERTIFICATE", serverDER)
	writePEM(t, c.caFile, "CERTIFICATE", caDER)
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, c.keyFile, "PRIVATE KEY", keyDER)
	return c
}

func genKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsArgs returns memcached's options for TLS with c's files.
func (c *TLS) tlsArgs(requireClientCert bool) []string {
	opts := "ssl_chain_cert=" + c.certFile + ",ssl_key=" + c.keyFile + ",ssl_ca_cert=" + c.caFile
	if requireClientCert {
		opts += ",ssl_verify_mode=2"
	}
	return []string{"-Z", "-o", opts}
}
