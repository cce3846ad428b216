//go:build !race

package uac

const raceEnabled = false
