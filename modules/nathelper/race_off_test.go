//go:build !race

package nathelper

const raceEnabled = false
