//go:build !race

package pike

const raceEnabled = false
