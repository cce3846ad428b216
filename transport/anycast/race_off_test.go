//go:build !race

package anycast

const raceEnabled = false
