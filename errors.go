package herald

import (
	"errors"
	"fmt"
)

// Domain errors. Stores translate driver errors into these; storetest checks
// that they do. Match them with errors.Is.
var (
	// ErrNotFound means the object does not exist or belongs to another tenant.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write clashes with what is stored (a duplicate id,
	// an idempotency key reused with another body).
	ErrConflict = errors.New("conflict")
	// ErrInvalid means the input is not acceptable; see ValidationError.
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable means the store cannot be reached right now.
	ErrUnavailable = errors.New("store unavailable")
)

// ValidationError names the field that is wrong and why. It matches ErrInvalid.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns a *ValidationError for field.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
