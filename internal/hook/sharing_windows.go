package hook

import (
	"errors"
	"syscall"
)

// errorSharingViolation is Windows' ERROR_SHARING_VIOLATION.
const errorSharingViolation = syscall.Errno(32)

// sharingViolation reports whether err is a sharing violation: another
// handle on the file (a rename replacing it) excludes this open.
func sharingViolation(err error) bool { return errors.Is(err, errorSharingViolation) }
