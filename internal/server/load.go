package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
	"github.com/spf13/pflag"
)

// maxConfigFileSize is the largest configuration file LoadConfig reads.
const maxConfigFileSize = 1 << 20

// LoadOptions are LoadConfig's sources besides the file.
type LoadOptions struct {
	// Flags is a parsed flag set that AddFlags registered the keys in; nil
	// means no flags.
	Flags *pflag.FlagSet
	// Getenv looks up environment variables; nil means os.Getenv.
	Getenv func(string) string
}

// AddFlags registers a flag for every configuration key in fs. The flags
// record their raw values; LoadConfig parses them like every other source.
func AddFlags(fs *pflag.FlagSet) {
	for _, k := range keys {
		help := k.Help
		if k.DefaultText() != "" {
			help += " (default " + k.DefaultText() + ")"
		}
		help += " [" + k.Env() + "]"
		f := fs.VarPF(&rawFlag{kind: k.Kind}, k.Flag(), "", help)
		if k.Kind == KindBool {
			f.NoOptDefVal = "true"
		}
	}
}

// rawFlag is a pflag.Value that keeps what the user typed.
type rawFlag struct {
	kind   Kind
	values []string
}

func (f *rawFlag) String() string { return strings.Join(f.values, ",") }
func (f *rawFlag) Set(s string) error {
	if _, err := parseValue(f.kind, s); err != nil { // fail at parse time, with pflag's context
		return err
	}
	f.values = append(f.values, s)
	return nil
}
func (f *rawFlag) Type() string {
	switch f.kind {
	case KindList:
		return "strings"
	case KindIssuers, KindUpstreams, KindClients, KindIdPs:
		return "json"
	case KindBool:
		return "bool"
	}
	return string(f.kind)
}

// raw returns the value to parse: list flags accumulate over repetitions,
// other flags take the last one.
func (f *rawFlag) raw() string {
	if f.kind == KindList {
		return strings.Join(f.values, ",")
	}
	return f.values[len(f.values)-1]
}

// LoadConfig builds a Config from, in increasing precedence, the defaults,
// the YAML file (named by --config or MANDATE_CONFIG), MANDATE_*
// environment variables and flags, then validates it.
func LoadConfig(opts LoadOptions) (Config, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	flagValue := func(k Key) (string, bool) {
		if opts.Flags == nil {
			return "", false
		}
		f := opts.Flags.Lookup(k.Flag())
		if f == nil || !f.Changed {
			return "", false
		}
		rf, ok := f.Value.(*rawFlag)
		if !ok || len(rf.values) == 0 {
			return "", false
		}
		return rf.raw(), true
	}

	c := Defaults()
	cfgKey := keys[0] // "config"
	if v, ok := flagValue(cfgKey); ok {
		c.ConfigFile = v
	} else if v := getenv(cfgKey.Env()); v != "" {
		c.ConfigFile = v
	}
	if c.ConfigFile != "" {
		if err := loadFile(&c, c.ConfigFile); err != nil {
			return Config{}, err
		}
	}
	for _, k := range keys {
		if v := getenv(k.Env()); v != "" {
			if err := k.set(&c, v); err != nil {
				return Config{}, fmt.Errorf("%s: %w", k.Env(), err)
			}
		}
	}
	for _, k := range keys {
		if v, ok := flagValue(k); ok {
			if err := k.set(&c, v); err != nil {
				return Config{}, fmt.Errorf("--%s: %w", k.Flag(), err)
			}
		}
	}
	c.complete(getenv)
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, nil
}

// rawValue captures one key's YAML node during strict decoding; it is
// parsed afterwards, with the key's path known.
type rawValue struct{ node ast.Node }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (r *rawValue) UnmarshalYAML(n ast.Node) error {
	r.node = n
	return nil
}

var rawValueType = reflect.TypeFor[*rawValue]()

// fileSchema builds the struct type the file is strictly decoded into:
// one *rawValue field per file key, nested by path segment. It is built
// from the key table so that the file schema cannot drift from it; the
// returned map gives each key's field index path.
func fileSchema() (reflect.Type, map[string][]int) {
	type node struct {
		children map[string]*node
		order    []string
	}
	root := &node{children: map[string]*node{}}
	for _, k := range keys {
		if k.FlagEnvOnly {
			continue
		}
		n := root
		for _, seg := range strings.Split(k.Path, ".") {
			c, ok := n.children[seg]
			if !ok {
				c = &node{children: map[string]*node{}}
				n.children[seg] = c
				n.order = append(n.order, seg)
			}
			n = c
		}
	}
	index := map[string][]int{}
	var build func(n *node, prefix string, idx []int) reflect.Type
	build = func(n *node, prefix string, idx []int) reflect.Type {
		fields := make([]reflect.StructField, len(n.order))
		for i, seg := range n.order {
			c := n.children[seg]
			path := strings.TrimPrefix(prefix+"."+seg, ".")
			fidx := append(append([]int(nil), idx...), i)
			typ := rawValueType
			if len(c.order) > 0 {
				typ = build(c, path, fidx)
			} else {
				index[path] = fidx
			}
			fields[i] = reflect.StructField{
				Name: "F" + strconv.Itoa(i),
				Type: typ,
				Tag:  reflect.StructTag(`yaml:"` + seg + `"`),
			}
		}
		return reflect.StructOf(fields)
	}
	return build(root, "", nil), index
}

// loadFile strictly decodes the YAML file at path into c. Errors name the
// file, the line and the key's dotted path.
func loadFile(c *Config, path string) error {
	data, err := readLimited(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	typ, index := fileSchema()
	v := reflect.New(typ)
	if err := yaml.UnmarshalWithOptions(data, v.Interface(), yaml.Strict()); err != nil {
		return fileError(path, data, err)
	}
	for _, k := range keys {
		fidx, ok := index[k.Path]
		if !ok {
			continue
		}
		rv := v.Elem().FieldByIndex(fidx).Interface().(*rawValue)
		if rv == nil || rv.node == nil || rv.node.Type() == ast.NullType {
			continue
		}
		val, err := nodeValue(k, rv.node)
		if err != nil {
			ln := line(rv.node.GetToken())
			var le *lineError
			if errors.As(err, &le) && le.line > 0 {
				ln = le.line
			}
			return fmt.Errorf("%s: line %d: %s: %w", path, ln, k.Path, err)
		}
		if err := k.assign(c, val); err != nil {
			return fmt.Errorf("%s: line %d: %s: %w", path, line(rv.node.GetToken()), k.Path, err)
		}
	}
	return nil
}

// nodeValue converts a key's YAML node to its typed value, using the same
// parser as the environment and flags for scalars.
func nodeValue(k Key, n ast.Node) (any, error) {
	switch k.Kind {
	case KindList:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			return nil, errors.New("expected a list")
		}
		out := make([]string, 0, len(seq.Values))
		for _, item := range seq.Values {
			s, err := scalarText(item)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case KindIssuers:
		var out []FederationIssuer
		if err := yaml.NodeToValue(n, &out, yaml.Strict()); err != nil {
			var ye yaml.Error
			if errors.As(err, &ye) {
				return nil, &lineError{line: line(ye.GetToken()), msg: ye.GetMessage()}
			}
			return nil, err
		}
		return out, nil
	case KindClients:
		return yamlList[OAuthClient](n)
	case KindIdPs:
		return yamlList[PeopleIdP](n)
	case KindUpstreams:
		var out []MCPUpstream
		if err := yaml.NodeToValue(n, &out, yaml.Strict()); err != nil {
			var ye yaml.Error
			if errors.As(err, &ye) {
				return nil, &lineError{line: line(ye.GetToken()), msg: ye.GetMessage()}
			}
			return nil, err
		}
		return out, nil
	}
	s, err := scalarText(n)
	if err != nil {
		return nil, err
	}
	return parseValue(k.Kind, s)
}

// lineError is an error inside a key's value at a more precise line.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

// scalarText returns a scalar node's text as written (without quotes).
func scalarText(n ast.Node) (string, error) {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
		return "", errors.New("expected a single value, not a list or mapping")
	case *ast.AliasNode, *ast.AnchorNode, *ast.TagNode:
		return "", errors.New("anchors, aliases and tags are not supported")
	}
	if _, ok := n.(ast.ScalarNode); !ok {
		return "", fmt.Errorf("expected a single value, got %s", n.Type())
	}
	return n.GetToken().Value, nil
}

// fileError turns a decoding error into "file: line N: message", naming
// an unknown key by its dotted path.
func fileError(path string, data []byte, err error) error {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return fmt.Errorf("%s: %v", path, err)
	}
	tk := ye.GetToken()
	var unknown *yaml.UnknownFieldError
	if errors.As(err, &unknown) {
		if key := keyPathAt(data, tk); key != "" {
			return fmt.Errorf("%s: line %d: unknown key %q", path, line(tk), key)
		}
		return fmt.Errorf("%s: line %d: unknown key %q", path, line(tk), tk.Value)
	}
	return fmt.Errorf("%s: line %d: %s", path, line(tk), ye.GetMessage())
}

// keyPathAt returns the dotted path of the mapping key at tk's position.
func keyPathAt(data []byte, tk *token.Token) string {
	if tk == nil {
		return ""
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return ""
	}
	var found string
	for _, doc := range f.Docs {
		ast.Walk(visitorFunc(func(n ast.Node) bool {
			mv, ok := n.(*ast.MappingValueNode)
			if ok && found == "" {
				kt := mv.Key.GetToken()
				if kt != nil && kt.Position.Line == tk.Position.Line && kt.Position.Column == tk.Position.Column {
					found = strings.TrimPrefix(mv.GetPath(), "$.")
				}
			}
			return found == ""
		}), doc)
	}
	return found
}

type visitorFunc func(ast.Node) bool

func (f visitorFunc) Visit(n ast.Node) ast.Visitor {
	if f(n) {
		return f
	}
	return nil
}

func line(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigFileSize)
	}
	return data, nil
}

// yamlList decodes a YAML sequence of mappings strictly.
func yamlList[T any](n ast.Node) ([]T, error) {
	var out []T
	if err := yaml.NodeToValue(n, &out, yaml.Strict()); err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			return nil, &lineError{line: line(ye.GetToken()), msg: ye.GetMessage()}
		}
		return nil, err
	}
	return out, nil
}
