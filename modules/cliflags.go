package modules

import (
	"errors"
	"flag"
	"io"
)

// ParseFlags parses fs's flags wherever they stand among a module CLI
// verb's arguments ("add 192.0.2.1 --group 2" as well as "add --group 2
// 192.0.2.1") and returns the other arguments in order. A bad flag is a
// *KeyError (the CLI prints it with the verb's usage); -h is flag.ErrHelp.
// It silences fs's own output.
func ParseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &KeyError{Msg: err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
