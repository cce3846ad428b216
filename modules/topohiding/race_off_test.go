//go:build !race

package topohiding

const raceEnabled = false
