package policy

import (
	"embed"
	"io/fs"
)

//go:embed defaults/*.cedar defaults/tests/*.yaml
var defaultsFS embed.FS

// Defaults returns the default policy set's file system: *.cedar policies
// implementing graded trust, and tests/*.yaml, the cases `mandate policy
// test` checks them against. `mandate policy defaults DIR` writes it out.
func Defaults() fs.FS {
	sub, err := fs.Sub(defaultsFS, "defaults")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	return sub
}

// DefaultSources returns the default policies as sources.
func DefaultSources() []Source {
	srcs, err := LoadFS(Defaults())
	if err != nil {
		panic(err) // embedded files are readable
	}
	return srcs
}
