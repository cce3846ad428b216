//go:build !race

package drouting

const raceEnabled = false
