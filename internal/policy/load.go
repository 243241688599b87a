package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// LoadFS reads every *.cedar file under fsys (recursively, in lexical
// order) as a Source named by its path.
func LoadFS(fsys fs.FS) ([]Source, error) {
	var srcs []Source
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || path.Ext(p) != ".cedar" || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > MaxSourceSize {
			return fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalidPolicy, p, MaxSourceSize)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		srcs = append(srcs, Source{Name: p, Text: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	return srcs, nil
}

// LoadDir reads every *.cedar file under dir. See LoadFS.
func LoadDir(dir string) ([]Source, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load policies: %s is not a directory", dir)
	}
	return LoadFS(os.DirFS(dir))
}

// LoaderConfig configures a Loader.
type LoaderConfig struct {
	// Engine receives each good policy set; required.
	Engine *Engine
	// Dir is the policy directory; empty means no files (only Defaults
	// and Extra).
	Dir string
	// Defaults adds the default policy set (DefaultSources) to the files.
	Defaults bool
	// API holds the API-managed policies; nil means none. Run polls its
	// PolicySourcesVersion, so a change made by another process on the
	// same store goes live within Interval.
	API SourceStore
	// Extra returns further sources on every load: the API-managed
	// policies. Nil means none.
	Extra func(context.Context) ([]Source, error)
	// Interval is how often Run polls Dir and API for changes (default
	// DefaultPollInterval).
	Interval time.Duration
	// Logger receives reload results; nil discards.
	Logger *slog.Logger
	// Name labels the loader's metrics (default "live").
	Name string
}

// DefaultPollInterval is how often a Loader checks the policy directory.
const DefaultPollInterval = 2 * time.Second

// Loader keeps an Engine's policy set in step with its sources. It polls
// the directory's file names, sizes and modification times and the API
// store's version (no file
// system notification dependency: polling a directory of policies every
// few seconds is cheap and works on every platform and volume type) and
// recompiles when they change, or when Reload is called (admin API,
// SIGHUP). A set that fails to compile leaves the live one in place; the
// problems are logged and kept for Status.
type Loader struct {
	cfg     LoaderConfig
	log     *slog.Logger
	metrics loaderMetrics

	mu       sync.Mutex // serializes loads
	compiler Compiler   // re-parses only changed sources
	stamp    string
	lastErr  error
	loaded   time.Time
}

// NewLoader returns a Loader. Call Reload (or Run) to load the first set.
func NewLoader(cfg LoaderConfig) *Loader {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPollInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = "live"
	}
	return &Loader{cfg: cfg, log: log, metrics: newLoaderMetrics(cfg.Name)}
}

// Sources reads the current sources: defaults, files, extra.
func (l *Loader) Sources(ctx context.Context) ([]Source, error) {
	var srcs []Source
	if l.cfg.Defaults {
		for _, s := range DefaultSources() {
			s.Name = "defaults/" + s.Name
			srcs = append(srcs, s)
		}
	}
	if l.cfg.Dir != "" {
		files, err := LoadDir(l.cfg.Dir)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, files...)
	}
	if l.cfg.API != nil {
		api, err := l.cfg.API.ListPolicySources(ctx)
		if err != nil {
			return nil, fmt.Errorf("load policies: api policies: %w", err)
		}
		for _, s := range api {
			srcs = append(srcs, Source{Name: SourceName(s.Name), Text: s.Text})
		}
	}
	if l.cfg.Extra != nil {
		extra, err := l.cfg.Extra(ctx)
		if err != nil {
			return nil, fmt.Errorf("load policies: %w", err)
		}
		srcs = append(srcs, extra...)
	}
	return srcs, nil
}

// Reload reads and compiles the sources and, if they compile, makes them
// live. On error the live set is unchanged; a *CompileError lists every
// problem with its file, line and column.
func (l *Loader) Reload(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stamp = l.stamps(ctx)
	err := l.reload(ctx)
	l.lastErr = err
	if err != nil {
		l.metrics.failed.Inc()
		l.log.Error("policy reload failed; keeping the last good policy set", "err", err)
		return err
	}
	return nil
}

func (l *Loader) reload(ctx context.Context) error {
	srcs, err := l.Sources(ctx)
	if err != nil {
		return err
	}
	set, err := l.compiler.Compile(srcs)
	if err != nil {
		return err
	}
	l.cfg.Engine.Swap(set)
	l.loaded = time.Now()
	l.metrics.ok.Inc()
	l.metrics.policies.Set(float64(set.Len()))
	l.log.Info("policies loaded", "policies", set.Len(), "sources", len(srcs))
	return nil
}

// Status reports when the live set was loaded and the last reload's error.
func (l *Loader) Status() (loaded time.Time, lastErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loaded, l.lastErr
}

// Run polls the directory until ctx ends, reloading on change.
func (l *Loader) Run(ctx context.Context) error {
	if l.cfg.Dir == "" && l.cfg.API == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		l.mu.Lock()
		changed := l.stamps(ctx) != l.stamp
		l.mu.Unlock()
		if changed {
			if err := l.Reload(ctx); err != nil && errors.Is(err, context.Canceled) {
				return nil
			}
		}
	}
}

// stamps summarizes the policy directory and the API store's version: a
// change in either means a reload. A store that cannot answer stamps its
// error, so that it is retried (and reported) by a reload.
func (l *Loader) stamps(ctx context.Context) string {
	s := dirStamp(l.cfg.Dir)
	if l.cfg.API != nil {
		v, err := l.cfg.API.PolicySourcesVersion(ctx)
		if err != nil {
			s += "\n--\napi!" + err.Error()
		} else {
			s += fmt.Sprintf("\n--\napi|%d", v)
		}
	}
	return s
}

// Candidate compiles the current sources with src added (or replacing
// the source of the same name, or removed when src.Text is nil) without
// making them live: what a change would do.
func (l *Loader) Candidate(ctx context.Context, src Source) (*Set, error) {
	srcs, err := l.Sources(ctx)
	if err != nil {
		return nil, err
	}
	srcs = slices.DeleteFunc(srcs, func(s Source) bool { return s.Name == src.Name })
	if src.Text != nil {
		srcs = append(srcs, src)
	}
	return l.compiler.Compile(srcs)
}

// dirStamp summarizes the names, sizes and modification times of the
// .cedar files under dir.
func dirStamp(dir string) string {
	if dir == "" {
		return ""
	}
	var parts []string
	_ = fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			parts = append(parts, p+"!"+err.Error())
			return nil
		}
		if d.IsDir() || path.Ext(p) != ".cedar" {
			return nil
		}
		if info, err := d.Info(); err == nil {
			parts = append(parts, fmt.Sprintf("%s|%d|%d", p, info.Size(), info.ModTime().UnixNano()))
		}
		return nil
	})
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}
