package pageactor

// mutationFetchOverPresent, set by a build tag (mutation_fetch_over_present.go;
// scripts/mutations.sh runs the simulator on it), plants a deliberate bug:
// a fetch writes its pages over pages that became present while it was in
// flight.
var mutationFetchOverPresent = false
