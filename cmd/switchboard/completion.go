package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"switchboard/modules"
)

// cmdCompletion prints a shell completion script:
//
//	source <(switchboard completion bash)       # ~/.bashrc
//	source <(switchboard completion zsh)        # ~/.zshrc
//
// Subcommands, the verbs of user, domain and the modules' offline
// commands are completed from what is compiled in; the commands of
// `switchboard ctl` are asked of the running server (`ctl -o names
// help`, with the -c, -a and --token given so far), so they are the ones
// it has.
func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprintln(stderr, "usage: switchboard completion bash|zsh")
		return 2
	}
	verbs := completionVerbs()
	var cases strings.Builder
	names := make([]string, 0, len(verbs))
	for name := range verbs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&cases, "\t%s) verbs=%q ;;\n", name, strings.Join(verbs[name], " "))
	}
	top := append([]string{"run", "check-config", "config-default", "ctl", "user", "domain", "version", "completion", "help"}, names...)
	top = uniq(top)
	script := bashCompletion
	if args[0] == "zsh" {
		script = zshCompletion
	}
	r := strings.NewReplacer("@TOP@", strings.Join(top, " "), "@CASES@", cases.String())
	io.WriteString(stdout, r.Replace(script))
	return 0
}

// completionVerbs are the second words of the subcommands that have
// verbs.
func completionVerbs() map[string][]string {
	m := map[string][]string{
		"user":       {"add", "passwd", "del", "list"},
		"domain":     {"add", "del", "list"},
		"completion": {"bash", "zsh"},
	}
	defs, _ := modules.Ordered()
	for _, d := range defs {
		if len(d.CLI) == 0 {
			continue
		}
		var vs []string
		for v := range d.CLI {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		m[d.CommandName()] = vs
	}
	return m
}

func uniq(l []string) []string {
	seen := map[string]bool{}
	out := l[:0]
	for _, s := range l {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// The scripts share one rule for ctl: the words after "ctl" are flags
// (-c FILE, -a ADDR, --token T, -o FMT, --set K=V, --timeout D take a
// value) until the command; while the command is being typed, the
// running server's commands are offered.
const bashCompletion = `# bash completion for switchboard: source <(switchboard completion bash)
_switchboard() {
	local cur i w cmdgiven
	cur="${COMP_WORDS[COMP_CWORD]}"
	COMPREPLY=()
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "@TOP@" -- "$cur"))
		return
	fi
	case "${COMP_WORDS[1]}" in
	ctl)
		local -a flags=()
		cmdgiven=
		i=2
		while [ "$i" -lt "$COMP_CWORD" ]; do
			w="${COMP_WORDS[$i]}"
			case "$w" in
			-c|-a|-token|--token|-set|--set|-timeout|--timeout)
				flags+=("$w" "${COMP_WORDS[$((i+1))]}")
				i=$((i+2))
				continue ;;
			-o|--o) i=$((i+2)); continue ;;
			-*) flags+=("$w") ;;
			*) cmdgiven=1 ;;
			esac
			i=$((i+1))
		done
		case "${COMP_WORDS[$((COMP_CWORD-1))]}" in
		-o|--o) COMPREPLY=($(compgen -W "table json names" -- "$cur")); return ;;
		-c) COMPREPLY=($(compgen -f -- "$cur")); return ;;
		esac
		if [ -z "$cmdgiven" ] && [[ "$cur" != -* ]]; then
			COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" ctl "${flags[@]}" -o names help 2>/dev/null)" -- "$cur"))
		elif [[ "$cur" == -* ]]; then
			COMPREPLY=($(compgen -W "-c -a --token -o --set --timeout" -- "$cur"))
		fi
		return ;;
	esac
	if [ "$COMP_CWORD" -eq 2 ]; then
		local verbs=
		case "${COMP_WORDS[1]}" in
@CASES@		esac
		[ -n "$verbs" ] && COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
		return
	fi
	COMPREPLY=($(compgen -f -- "$cur"))
}
complete -F _switchboard switchboard
`

const zshCompletion = `#compdef switchboard
# zsh completion for switchboard: source <(switchboard completion zsh)
_switchboard() {
	local -a top flags
	local w i cmdgiven
	if (( CURRENT == 2 )); then
		top=(@TOP@)
		compadd -- $top
		return
	fi
	case $words[2] in
	ctl)
		flags=()
		cmdgiven=
		i=3
		while (( i < CURRENT )); do
			w=$words[i]
			case $w in
			-c|-a|-token|--token|-set|--set|-timeout|--timeout)
				flags+=($w $words[i+1])
				(( i += 2 ))
				continue ;;
			-o|--o) (( i += 2 )); continue ;;
			-*) flags+=($w) ;;
			*) cmdgiven=1 ;;
			esac
			(( i++ ))
		done
		case $words[CURRENT-1] in
		-o|--o) compadd -- table json names; return ;;
		-c) _files; return ;;
		esac
		if [[ -z $cmdgiven && $PREFIX != -* ]]; then
			compadd -- ${(f)"$($words[1] ctl $flags -o names help 2>/dev/null)"}
		elif [[ $PREFIX == -* ]]; then
			compadd -- -c -a --token -o --set --timeout
		fi
		return ;;
	esac
	if (( CURRENT == 3 )); then
		local verbs=
		case $words[2] in
@CASES@		esac
		[[ -n $verbs ]] && compadd -- ${=verbs}
		return
	fi
	_files
}
if (( $+functions[compdef] )); then
	compdef _switchboard switchboard
fi
`
