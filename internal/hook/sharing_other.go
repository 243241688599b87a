//go:build !windows

package hook

// sharingViolation reports whether err is a sharing violation, which
// only Windows has: elsewhere a rename never excludes an open.
func sharingViolation(error) bool { return false }
