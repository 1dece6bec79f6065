package profiles

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestLocalFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 2_000_000 {
		x += i % 7
	}
	_ = x
	files, err := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"cpu", "heap", "mutex", "block"} {
		st, err := os.Stat(filepath.Join(dir, kind+".pprof"))
		if err != nil || st.Size() == 0 || files[kind] == "" {
			t.Errorf("%s profile: %v %v", kind, err, files[kind])
		}
	}
	if again, err := s.Stop(); again != nil || err != nil {
		t.Fatal("second Stop did something")
	}
}

// TestPyroscopePush pushes to a fake Pyroscope server on loopback.
func TestPyroscopePush(t *testing.T) {
	var uploads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		uploads.Add(1)
	}))
	defer srv.Close()
	s, err := Start(Config{PyroscopeURL: srv.URL, AppName: "ffbench-test", UploadRate: 200 * time.Millisecond,
		Tags: map[string]string{"test": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if uploads.Load() == 0 {
		t.Fatal("nothing reached the Pyroscope server")
	}
}

func TestZeroConfigCapturesNothing(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if files, err := s.Stop(); len(files) != 0 || err != nil {
		t.Fatalf("%v %v", files, err)
	}
}
