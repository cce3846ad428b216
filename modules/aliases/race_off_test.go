//go:build !race

package aliases

const raceEnabled = false
