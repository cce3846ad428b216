//go:build race

package ng

const raceEnabled = true
