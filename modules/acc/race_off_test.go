//go:build !race

package acc

const raceEnabled = false
