// Package profiles captures profiles of a bench run or a worker process:
// local pprof files (CPU, heap, mutex, block) and continuous profiles
// pushed to a Pyroscope server with grafana/pyroscope-go. A worker binary
// enables the same with one call:
//
//	s, err := profiles.Start(profiles.Config{Dir: "prof", PyroscopeURL: url, AppName: "my-worker"})
//	...
//	defer s.Stop()
package profiles

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/grafana/pyroscope-go"
)

// Defaults of Config fields left zero.
const (
	AppNameDefault       = "flowfabric"
	MutexFractionDefault = 5
	BlockRateDefault     = 10_000 // ns: one blocking event sampled per 10µs blocked
	UploadRateDefault    = 10 * time.Second
)

// Config says which profiles to capture. The zero value captures nothing.
type Config struct {
	// Dir receives cpu.pprof, heap.pprof, mutex.pprof and block.pprof when
	// the session stops. Empty: no local files.
	Dir string
	// PyroscopeURL is a Pyroscope server ("http://host:4040") to push
	// continuous profiles to. Empty: no push. With Dir set too, the CPU
	// profile goes to the file (Go allows one CPU profile at a time) and
	// Pyroscope gets the others.
	PyroscopeURL string
	// AppName names the application in Pyroscope. Default "flowfabric".
	AppName string
	// Tags label the pushed profiles (e.g. profile, scenario).
	Tags map[string]string
	// MutexFraction samples 1/n mutex contention events. Default 5.
	MutexFraction int
	// BlockRate samples one blocking event per this many ns blocked.
	// Default 10000.
	BlockRate int
	// UploadRate is how often Pyroscope receives profiles. Default 10s.
	UploadRate time.Duration
}

// Session is a running capture.
type Session struct {
	cfg       Config
	cpuFile   *os.File
	pyro      *pyroscope.Profiler
	prevMutex int
	stopped   bool
}

// Start begins capturing. Stop the session to write the files.
func Start(cfg Config) (*Session, error) {
	if cfg.AppName == "" {
		cfg.AppName = AppNameDefault
	}
	if cfg.MutexFraction <= 0 {
		cfg.MutexFraction = MutexFractionDefault
	}
	if cfg.BlockRate <= 0 {
		cfg.BlockRate = BlockRateDefault
	}
	if cfg.UploadRate <= 0 {
		cfg.UploadRate = UploadRateDefault
	}
	s := &Session{cfg: cfg}
	if cfg.Dir == "" && cfg.PyroscopeURL == "" {
		return s, nil
	}
	s.prevMutex = runtime.SetMutexProfileFraction(cfg.MutexFraction)
	runtime.SetBlockProfileRate(cfg.BlockRate)
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, err
		}
		f, err := os.Create(filepath.Join(cfg.Dir, "cpu.pprof"))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("profiles: cpu: %w", err)
		}
		s.cpuFile = f
	}
	if cfg.PyroscopeURL != "" {
		types := []pyroscope.ProfileType{pyroscope.ProfileAllocObjects, pyroscope.ProfileAllocSpace,
			pyroscope.ProfileInuseObjects, pyroscope.ProfileInuseSpace, pyroscope.ProfileGoroutines,
			pyroscope.ProfileMutexCount, pyroscope.ProfileMutexDuration, pyroscope.ProfileBlockCount,
			pyroscope.ProfileBlockDuration}
		if s.cpuFile == nil {
			types = append([]pyroscope.ProfileType{pyroscope.ProfileCPU}, types...)
		}
		p, err := pyroscope.Start(pyroscope.Config{ApplicationName: cfg.AppName, ServerAddress: cfg.PyroscopeURL,
			Tags: cfg.Tags, ProfileTypes: types, UploadRate: cfg.UploadRate})
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("profiles: pyroscope: %w", err)
		}
		s.pyro = p
	}
	return s, nil
}

// Stop ends the capture, writes the local files and flushes the last
// Pyroscope upload. It returns the written files by kind ("cpu", "heap",
// "mutex", "block"), as paths inside Dir. Stopping twice does nothing.
func (s *Session) Stop() (map[string]string, error) {
	if s == nil || s.stopped {
		return nil, nil
	}
	s.stopped = true
	files := map[string]string{}
	var errs []error
	if s.cpuFile != nil {
		pprof.StopCPUProfile()
		errs = append(errs, s.cpuFile.Close())
		files["cpu"] = filepath.Join(s.cfg.Dir, "cpu.pprof")
	}
	if s.cfg.Dir != "" {
		runtime.GC() // heap profile reflects the last GC
		for _, kind := range []string{"heap", "mutex", "block"} {
			path := filepath.Join(s.cfg.Dir, kind+".pprof")
			if err := writeProfile(kind, path); err != nil {
				errs = append(errs, err)
				continue
			}
			files[kind] = path
		}
	}
	if s.pyro != nil {
		errs = append(errs, s.pyro.Stop())
	}
	if s.cfg.Dir != "" || s.cfg.PyroscopeURL != "" {
		runtime.SetMutexProfileFraction(s.prevMutex)
		runtime.SetBlockProfileRate(0)
	}
	return files, errors.Join(errs...)
}

func writeProfile(kind, path string) error {
	p := pprof.Lookup(kind)
	if p == nil {
		return fmt.Errorf("profiles: no %s profile", kind)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := p.WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
