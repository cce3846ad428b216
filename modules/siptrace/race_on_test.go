//go:build race

package siptrace

// raceEnabled: allocation counts are only meaningful without the race
// detector (make test runs the allocation tests in a pass without -race).
const raceEnabled = true
