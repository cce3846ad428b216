package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultYAML is the embedded configuration that `switchboard run` uses when
// no file is given. It spells out Default() so operators can copy it.
//
//go:embed default.yaml
var DefaultYAML []byte

// Error is a configuration error: the file, the line, the dotted key and
// what is wrong with it.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadFile reads and checks the file at path, then applies the overrides
// ("key=value" in dotted form, value in YAML, as given with --set).
func LoadFile(path string, overrides []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Load(path, data, overrides)
}

// Load parses data (named name in errors) on top of Default(), applies the
// overrides and checks the result.
func Load(name string, data []byte, overrides []string) (*Config, error) {
	cfg := Default()
	d := decoder{lines: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: name, Line: yamlErrorLine(err), Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 || root.Kind == yaml.DocumentNode {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	for _, o := range overrides {
		if err := applyOverride(root, o); err != nil {
			return nil, err
		}
	}
	d.sections = cfg.Modules
	if err := d.decode(root, reflect.ValueOf(cfg).Elem(), ""); err != nil {
		if ce, ok := err.(*Error); ok {
			ce.File = name
		}
		return nil, err
	}
	if err := cfg.check(d.line); err != nil {
		if ce, ok := err.(*Error); ok {
			ce.File = name
		}
		return nil, err
	}
	return cfg, nil
}

// applyOverride sets key=value inside the document tree before decoding, so
// an override is checked exactly like the same key written in the file.
// Overridden keys report line 0 (the command line).
func applyOverride(root *yaml.Node, o string) error {
	key, val, ok := strings.Cut(o, "=")
	if !ok || key == "" {
		return &Error{File: "--set", Msg: fmt.Sprintf("%q is not key=value (e.g. timers.t1=250ms)", o)}
	}
	var vdoc yaml.Node
	if err := yaml.Unmarshal([]byte(val), &vdoc); err != nil {
		return &Error{File: "--set", Key: key, Msg: "value is not valid YAML: " + err.Error()}
	}
	var value *yaml.Node
	if len(vdoc.Content) == 1 {
		value = vdoc.Content[0]
	} else {
		value = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}
	}
	zeroLines(value)
	node := root
	parts := strings.Split(key, ".")
	for i, p := range parts {
		if node.Kind != yaml.MappingNode {
			return &Error{File: "--set", Key: strings.Join(parts[:i], "."), Msg: "is not a section, cannot set " + key}
		}
		var next *yaml.Node
		for j := 0; j+1 < len(node.Content); j += 2 {
			if node.Content[j].Value == p {
				next = node.Content[j+1]
				if i == len(parts)-1 {
					node.Content[j+1] = value
				}
				break
			}
		}
		if i == len(parts)-1 {
			if next == nil {
				node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p}, value)
			}
			return nil
		}
		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p}, next)
		}
		node = next
	}
	return nil
}

func zeroLines(n *yaml.Node) {
	n.Line = 0
	for _, c := range n.Content {
		zeroLines(c)
	}
}

var yamlLineRe = "line "

func yamlErrorLine(err error) int {
	s := err.Error()
	i := strings.Index(s, yamlLineRe)
	if i < 0 {
		return 0
	}
	s = s[i+len(yamlLineRe):]
	j := 0
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(s[:j])
	return n
}

// decoder walks the YAML tree into the config structs by their yaml tags,
// rejecting unknown keys and recording the line of every key it sees. A
// top-level key that names a module decodes into that module's settings
// (sections).
type decoder struct {
	lines    map[string]int
	sections map[string]any
}

func (d *decoder) line(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

type scalarSetter interface{ setScalar(string) error }

func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) error {
	if key != "" {
		d.lines[key] = n.Line
	}
	fail := func(format string, args ...any) error {
		return &Error{Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if s, ok := v.Addr().Interface().(scalarSetter); ok {
		if n.Kind != yaml.ScalarNode {
			return fail("want a single value, not a %s", kindName(n))
		}
		if err := s.setScalar(n.Value); err != nil {
			return fail("%v", err)
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fail("want a section of keys, not a %s", kindName(n))
		}
		t := v.Type()
		fields := map[string]int{}
		for i := 0; i < t.NumField(); i++ {
			if tag := t.Field(i).Tag.Get("yaml"); tag != "" {
				fields[tag] = i
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			sub := k.Value
			if key != "" {
				sub = key + "." + k.Value
			}
			fi, ok := fields[k.Value]
			if !ok && key == "" && d.sections != nil {
				if st, isModule := d.sections[k.Value]; isModule {
					if seen[k.Value] {
						return &Error{Line: k.Line, Key: sub, Msg: "given twice"}
					}
					seen[k.Value] = true
					d.lines[sub] = k.Line
					if err := d.decode(val, reflect.ValueOf(st).Elem(), sub); err != nil {
						return err
					}
					continue
				}
			}
			if !ok {
				known := knownKeys(fields)
				if key == "" {
					known = knownKeys(fields, d.sectionNames()...)
				}
				return &Error{Line: k.Line, Key: sub, Msg: "unknown key; known keys here: " + known}
			}
			if seen[k.Value] {
				return &Error{Line: k.Line, Key: sub, Msg: "given twice"}
			}
			seen[k.Value] = true
			d.lines[sub] = k.Line
			if err := d.decode(val, v.Field(fi), sub); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fail("want a list, not a %s", kindName(n))
		}
		if len(n.Content) == 0 {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return fail("want a single value, not a %s", kindName(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Int64:
		if v.Type() == durationType {
			if n.Kind != yaml.ScalarNode {
				return fail("want a single value, not a %s", kindName(n))
			}
			var dur Duration
			if err := dur.setScalar(n.Value); err != nil {
				return fail("%v", err)
			}
			v.SetInt(int64(dur))
			return nil
		}
		fallthrough
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			return fail("want a number, not a %s", kindName(n))
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 10, 64)
		if err != nil {
			return fail("want a whole number, not %q", n.Value)
		}
		v.SetInt(i)
		return nil
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			return fail("want a number, not a %s", kindName(n))
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil {
			return fail("want a number, not %q", n.Value)
		}
		v.SetFloat(f)
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			return fail("want true or false, not a %s", kindName(n))
		}
		switch n.Value {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			return fail("want true or false, not %q", n.Value)
		}
		return nil
	}
	return errors.New("config: unsupported field type " + v.Type().String())
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "section"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "value"
}

var durationType = reflect.TypeOf(time.Duration(0))

func (d *decoder) sectionNames() []string {
	names := make([]string, 0, len(d.sections))
	for n := range d.sections {
		names = append(names, n)
	}
	return names
}

func knownKeys(fields map[string]int, more ...string) string {
	keys := make([]string, 0, len(fields)+len(more))
	for k := range fields {
		keys = append(keys, k)
	}
	keys = append(keys, more...)
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}
