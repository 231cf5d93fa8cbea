package dbactor

// SetAfterUserStatement installs f as afterUserStatement until the
// returned function is called.
func SetAfterUserStatement(f func(stmt string, err error) error) (restore func()) {
	afterUserStatement = f
	return func() { afterUserStatement = nil }
}

// SetPreUpdateFault installs f as preUpdateFault until the returned
// function is called.
func SetPreUpdateFault(f func(table string, before, after []any) error) (restore func()) {
	preUpdateFault = f
	return func() { preUpdateFault = nil }
}

// RowLookups returns how many queries statementFailed has run to read the
// rows failed statements touched.
func RowLookups() int64 { return rowLookups.Load() }

// ErrWriterBusy is errWriterBusy (see refreshWriter).
var ErrWriterBusy = errWriterBusy

// ErrNotBootstrap is errNotBootstrap (FinishDownload of a sink not open).
var ErrNotBootstrap = errNotBootstrap

// ErrBadDownloadStep is errBadDownloadStep.
var ErrBadDownloadStep = errBadDownloadStep
