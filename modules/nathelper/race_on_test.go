//go:build race

package nathelper

// raceEnabled: the race detector makes sync.Pool drop items on purpose,
// so allocation counts are only meaningful without it.
const raceEnabled = true
