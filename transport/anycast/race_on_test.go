//go:build race

package anycast

const raceEnabled = true
