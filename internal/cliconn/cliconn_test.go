package cliconn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/internal/cliconn"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func parse(t *testing.T, args ...string) (*cliconn.Flags, error) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := cliconn.Register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return f, f.Finish()
}

func TestFlags(t *testing.T) {
	t.Setenv(cliconn.EnvPassword, "from-env")
	f, err := parse(t, "--addr", " a:1, b:2 ,")
	if err != nil || len(f.Addrs) != 2 || f.Addrs[0] != "a:1" || f.Addrs[1] != "b:2" || f.Password != "from-env" || f.TLS != nil {
		t.Fatalf("%+v %v", f, err)
	}
	f, err = parse(t, "--password", "flag", "--tls")
	if err != nil || f.Password != "flag" || f.TLS == nil || f.TLS.RootCAs != nil || f.TLS.InsecureSkipVerify {
		t.Fatalf("%+v %v", f, err)
	}
	o := f.Options(valkeybackend.Options{SkipPrepare: true})
	if !o.SkipPrepare || o.TLS != f.TLS || o.Password != "flag" || o.Addrs[0] != cliconn.AddrDefault {
		t.Fatalf("options %+v", o)
	}
	if f, err = parse(t, "--namespace", "billing"); err != nil || f.Options(valkeybackend.Options{}).Namespace != "billing" {
		t.Fatalf("--namespace billing: %+v %v", f, err)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--addr", " , "}, {"--tls-cert", "x"}, {"--tls-key", "x"},
		{"--tls-ca", filepath.Join(dir, "missing")}, {"--tls-ca", junk}, {"--tls-cert", junk, "--tls-key", junk},
		{"--partitions", "-1"}, {"--connect-timeout", "0s"}, {"--namespace", "A"}, {"--namespace", "a:b"}} {
		if _, err := parse(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestTLSConnect: --tls-ca makes a verified TLS connection to a real
// server's TLS port; without it the server's certificate is refused.
func TestTLSConnect(t *testing.T) {
	ca, dir := tlsServerFiles(t)
	port := freePort(t)
	srv, err := valkeytest.Start(context.Background(), valkeytest.Options{ExtraArgs: []string{
		"--tls-port", strconv.Itoa(port), "--tls-cert-file", filepath.Join(dir, "server.crt"),
		"--tls-key-file", filepath.Join(dir, "server.key"), "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx := context.Background()

	f, err := parse(t, "--addr", addr, "--tls-ca", ca, "--connect-timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Connect(ctx, valkeybackend.Options{Partitions: 2})
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()

	f, err = parse(t, "--addr", addr, "--tls", "--connect-timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := f.Connect(ctx, valkeybackend.Options{SkipPrepare: true}); err == nil {
		b.Close()
		t.Fatal("a certificate from an unknown CA was accepted")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tlsServerFiles writes a CA and a server certificate for 127.0.0.1
// signed by it (server.crt, server.key) into a temp dir; it returns the
// CA's file and the dir.
func tlsServerFiles(t *testing.T) (caFile, dir string) {
	t.Helper()
	dir = t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ffctl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("server.crt", "CERTIFICATE", der)
	write("server.key", "EC PRIVATE KEY", keyDER)
	return write("ca.crt", "CERTIFICATE", caDER), dir
}
