package ssf

// Changes is Transmitter.changes, for the tests: a channel closed when
// the transmitter next wakes its waiters.
var Changes = (*Transmitter).changes
