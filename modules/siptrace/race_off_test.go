//go:build !race

package siptrace

const raceEnabled = false
