package dbactor

// SetAfterUserStatement installs f as afterUserStatement until the
// returned function is called.
func SetAfterUserStatement(f func(stmt string, err error) error) (restore func()) {
	afterUserStatement = f
	return func() { afterUserStatement = nil }
}
