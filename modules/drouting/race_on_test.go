//go:build race

package drouting

// raceEnabled: the race detector's sync.Pool drops items on purpose, so
// allocation counts are only meaningful without it (make test runs the
// allocation tests in a separate pass without -race).
const raceEnabled = true
