//go:build !race

package authban

const raceEnabled = false
