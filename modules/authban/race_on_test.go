//go:build race

package authban

// raceEnabled: allocation counts are only meaningful without the race
// detector (make test runs the allocation tests in a pass without -race).
const raceEnabled = true
