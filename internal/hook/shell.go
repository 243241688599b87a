package hook

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/mandatehq/mandate/internal/resource"
)

// Shell reading limits.
const (
	// MaxShellLine is the longest command line read; a longer one is
	// opaque.
	MaxShellLine = 64 << 10
	// MaxShellCommands bounds the simple commands (and redirections) of
	// one command line that are decided; a line with more is opaque.
	MaxShellCommands = 48
	// maxShellDepth bounds nested `sh -c` strings.
	maxShellDepth = 4
)

// ShellReading is what ReadShell makes of a command line: every program
// it would start and every file its redirections touch, or, when it
// cannot be read safely, why.
type ShellReading struct {
	Commands []ShellCommand
	// Writes and Reads are the redirection targets, as written (a
	// relative path is relative to the shell's working directory).
	Writes, Reads []string
	// Opaque, if set, says why the line cannot be read safely; the line
	// is then denied as a whole and the other fields are empty.
	Opaque string
}

// ShellCommand is one simple command of a line.
type ShellCommand struct {
	// Program is argv[0] with its quoting removed: a bare name or a path
	// (relative to the working directory unless absolute).
	Program string
	// Text is the simple command's source text.
	Text string
}

// errOpaque marks a line that cannot be read safely.
type errOpaque string

func (e errOpaque) Error() string { return string(e) }

// shells are the programs whose command strings ReadShell reads itself.
var shells = map[string]bool{
	"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "mksh": true,
	"ash": true, "fish": true, "csh": true, "tcsh": true, "busybox": true,
}

// opaqueBuiltins run a string or change what later names mean: the
// command they run cannot be read from the line.
var opaqueBuiltins = map[string]string{
	"eval": "eval runs a string built at run time", "trap": "trap runs a string later",
	"alias": "aliases change what later command names mean", "enable": "enable loads builtins",
	"hash": "hash changes where command names are found", "fc": "fc runs commands from history",
	"bind": "bind runs strings on key presses", "mapfile": "mapfile may run a callback",
	"readarray": "readarray may run a callback",
}

// dangerousVar reports the variables that change how the shell finds or
// starts programs, or what a program it starts runs.
func dangerousVar(name string) bool {
	switch name {
	case "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND",
		"BASH_LOADABLES_PATH", "EXECIGNORE", "BASH_XTRACEFD":
		return true
	// Variables through which git, pagers, editors and interpreters run a
	// command or load code that the line does not show.
	case "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR", "GIT_PAGER", "GIT_ASKPASS",
		"GIT_EXTERNAL_DIFF", "GIT_EXEC_PATH", "GIT_PROXY_COMMAND", "GIT_TEMPLATE_DIR", "GIT_DIR", "GIT_WORK_TREE",
		"SSH_ASKPASS", "SUDO_ASKPASS", "EDITOR", "VISUAL", "PAGER", "LESSOPEN", "LESSCLOSE", "MANPAGER",
		"NODE_OPTIONS", "PYTHONSTARTUP", "PYTHONPATH", "PERL5OPT", "PERL5LIB", "RUBYOPT", "RUBYLIB":
		return true
	}
	return strings.HasPrefix(name, "LD_") || strings.HasPrefix(name, "DYLD_") || strings.HasPrefix(name, "BASH_FUNC_") ||
		strings.HasPrefix(name, "GIT_CONFIG")
}

// gitRunsConfig are the parts of git configuration keys (lowercase) that
// name a command git runs or code it loads: `git -c core.sshCommand=…`
// runs what the line does not name as a program.
var gitRunsConfig = []string{"sshcommand", "pager", "editor", "fsmonitor", "hookspath", "alias.", "external",
	"command", "helper", "filter.", "textconv", "program", "askpass", "exec", "proxy", "ssh", "hook", "tool", "include"}

// ReadShell reads a bash command line as the shell would and returns the
// programs it starts: every simple command of its pipelines, lists,
// subshells, blocks, loops, functions and literal `sh -c` strings, the
// programs wrappers such as sudo, env, xargs, timeout or find -exec start,
// and the files its redirections write or read.
//
// What cannot be read safely makes the whole line opaque (see
// docs/coding-agents.md): command and process substitution, eval and the
// other string-running builtins, a shell reading commands from stdin (a
// pipe, a here-document, a redirection), `sh -c` with a string that is not
// a literal, a command name built from variables, globs, braces or
// tildes, arithmetic (which can run commands through array subscripts),
// indirect expansion, assignments to PATH, IFS, LD_* and the like, bash's
// /dev/tcp redirections, a relative path after a cd, and anything that
// does not parse.
func ReadShell(line string) ShellReading {
	if len(line) > MaxShellLine {
		return ShellReading{Opaque: fmt.Sprintf("the command line is longer than %d bytes", MaxShellLine)}
	}
	if !utf8.ValidString(line) || strings.ContainsRune(line, 0) {
		return ShellReading{Opaque: "the command line is not valid UTF-8 or holds a NUL byte (which the shell would not see)"}
	}
	r := &shellReader{}
	if err := r.read(line, 0); err != nil {
		return ShellReading{Opaque: err.Error()}
	}
	if r.changesDir {
		// A program named by a relative path, or any relative file (a
		// bare name too), is relative to a directory the line chose.
		files := append(append([]string{}, r.out.Writes...), r.out.Reads...)
		for _, p := range r.programs() {
			if strings.Contains(p, "/") {
				files = append(files, p)
			}
		}
		for _, p := range files {
			if !strings.HasPrefix(p, "/") {
				return ShellReading{Opaque: "the command line changes directory and then uses the relative path " + resource.Quote(p)}
			}
		}
	}
	if n := len(r.out.Commands) + len(r.out.Writes) + len(r.out.Reads); n > MaxShellCommands {
		return ShellReading{Opaque: fmt.Sprintf("the command line runs more than %d commands and redirections", MaxShellCommands)}
	}
	return r.out
}

type shellReader struct {
	out        ShellReading
	changesDir bool
}

func (r *shellReader) programs() []string {
	ps := make([]string, len(r.out.Commands))
	for i, c := range r.out.Commands {
		ps[i] = c.Program
	}
	return ps
}

func (r *shellReader) read(line string, depth int) error {
	if depth > maxShellDepth {
		return errOpaque("shell command strings are nested too deep")
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(line), "")
	if err != nil {
		return errOpaque("the command line does not parse as bash: " + err.Error())
	}
	var werr error
	syntax.Walk(f, func(n syntax.Node) bool {
		if werr != nil {
			return false
		}
		werr = r.node(n, line, depth)
		return werr == nil
	})
	return werr
}

// node checks one syntax node; simple commands and redirections are
// recorded.
func (r *shellReader) node(n syntax.Node, src string, depth int) error {
	switch n := n.(type) {
	case *syntax.CmdSubst:
		return errOpaque("command substitution runs a command whose output the line uses")
	case *syntax.ProcSubst:
		return errOpaque("process substitution runs a hidden command")
	case *syntax.ArithmExp, *syntax.ArithmCmd, *syntax.LetClause, *syntax.CStyleLoop:
		return errOpaque("arithmetic evaluation can run commands through array subscripts")
	case *syntax.ExtGlob:
		return errOpaque("extended globs are not read")
	case *syntax.TestDecl:
		return errOpaque("test declarations are not read")
	case *syntax.ParamExp:
		if n.Excl || n.Index != nil || n.Slice != nil || n.Names != 0 || n.NestedParam != nil || n.Flags != nil {
			return errOpaque("indirect, indexed or sliced parameter expansion can run commands")
		}
	case *syntax.TestClause:
		return testExpr(n.X)
	case *syntax.Assign:
		if n.Index != nil {
			return errOpaque("an indexed assignment evaluates arithmetic")
		}
		if n.Name != nil && dangerousVar(n.Name.Value) {
			return errOpaque("assigning " + n.Name.Value + " changes how programs are found or started")
		}
		if n.Naked && n.Name == nil {
			return errOpaque("a declaration built at run time")
		}
	case *syntax.DeclClause:
		for _, a := range n.Args {
			if a.Naked && a.Name == nil && a.Value != nil {
				if v, ok := literal(a.Value); ok && strings.HasPrefix(v, "-") && strings.ContainsAny(v, "inf") {
					return errOpaque(n.Variant.Value + " " + v + " makes later assignments evaluate or redirect")
				}
			}
		}
	case *syntax.Stmt:
		for _, rd := range n.Redirs {
			if err := r.redirect(rd); err != nil {
				return err
			}
		}
	case *syntax.CallExpr:
		return r.call(n, src, depth)
	}
	return nil
}

// testExpr refuses [[ ]] operators that evaluate their operands as
// arithmetic or variable names.
func testExpr(x syntax.TestExpr) error {
	switch x := x.(type) {
	case *syntax.BinaryTest:
		switch x.Op {
		case syntax.TsEql, syntax.TsNeq, syntax.TsLss, syntax.TsLeq, syntax.TsGtr, syntax.TsGeq:
			return errOpaque("[[ ]] arithmetic comparisons evaluate their operands")
		}
		if err := testExpr(x.X); err != nil {
			return err
		}
		return testExpr(x.Y)
	case *syntax.UnaryTest:
		if x.Op == syntax.TsVarSet || x.Op == syntax.TsRefVar {
			return errOpaque("[[ -v ]] evaluates a subscript")
		}
		return testExpr(x.X)
	case *syntax.ParenTest:
		return testExpr(x.X)
	}
	return nil
}

// redirect records the file a redirection writes or reads.
func (r *shellReader) redirect(rd *syntax.Redirect) error {
	var write, read bool
	switch rd.Op {
	case syntax.RdrOut, syntax.AppOut, syntax.RdrClob, syntax.AppClob, syntax.RdrAll, syntax.AppAll, syntax.RdrAllClob, syntax.AppAllClob:
		write = true
	case syntax.RdrInOut:
		write, read = true, true
	case syntax.RdrIn:
		read = true
	case syntax.DplIn, syntax.DplOut:
		v, ok := literal(rd.Word)
		if !ok {
			return errOpaque("a redirection to a target that is not a literal")
		}
		if v == "-" || strings.Trim(v, "0123456789") == "" || strings.TrimSuffix(v, "-") != v && strings.Trim(strings.TrimSuffix(v, "-"), "0123456789") == "" {
			return nil // a file descriptor
		}
		write = true // >&file: stdout and stderr to a file
	default:
		return nil // here-documents and here-strings feed the command
	}
	target, ok := literal(rd.Word)
	if !ok {
		return errOpaque("a redirection to a target that is not a literal")
	}
	switch {
	case target == "/dev/null" || target == "/dev/stdout" || target == "/dev/stderr" || target == "/dev/stdin" || target == "/dev/tty" || strings.HasPrefix(target, "/dev/fd/"):
		return nil
	case strings.HasPrefix(target, "/dev/tcp/") || strings.HasPrefix(target, "/dev/udp/"):
		return errOpaque("a /dev/tcp or /dev/udp redirection opens a network connection")
	}
	if write {
		r.out.Writes = append(r.out.Writes, target)
	}
	if read {
		r.out.Reads = append(r.out.Reads, target)
	}
	return nil
}

// call records the programs a simple command starts.
func (r *shellReader) call(c *syntax.CallExpr, src string, depth int) error {
	if len(c.Args) == 0 {
		return nil // assignments only (checked as nodes)
	}
	text := src[c.Pos().Offset():c.End().Offset()]
	args := c.Args
	for len(args) > 0 {
		prog, ok := literal(args[0])
		if !ok || prog == "" {
			return errOpaque("the command name " + resource.Quote(wordText(src, args[0])) + " is not a literal word (it uses " + notLiteral(args[0]) + ", variables, globs, braces or a tilde)")
		}
		switch prog { // spellings of builtins that are not names
		case "[":
			prog = "test"
		case ":":
			prog = "true"
		case ".":
			prog = "source"
		}
		r.out.Commands = append(r.out.Commands, ShellCommand{Program: prog, Text: text})
		base := path.Base(prog)
		if why, ok := opaqueBuiltins[base]; ok {
			return errOpaque(why)
		}
		if base == "cd" || base == "pushd" || base == "popd" {
			r.changesDir = true
		}
		if shells[base] {
			return r.shell(args[1:], src, depth)
		}
		if err := r.operands(base, args[1:]); err != nil {
			return err
		}
		next, err := wrapped(base, args[1:], src)
		if err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		if next.shellString != "" {
			return r.read(next.shellString, depth+1)
		}
		args = next.args
	}
	return nil
}

// shell reads the arguments of a shell: a literal -c string is read
// like the line itself; a shell reading commands from stdin is opaque.
func (r *shellReader) shell(args []*syntax.Word, src string, depth int) error {
	withC := false
	for i := 0; i < len(args); i++ {
		a, ok := literal(args[i])
		if !ok {
			if withC {
				return errOpaque("sh -c with a command string that is " + notLiteral(args[i]))
			}
			return errOpaque("a shell argument that is " + notLiteral(args[i]))
		}
		switch {
		case a == "--":
			continue
		case a == "-o" || a == "+o" || a == "-O" || a == "+O" || a == "--rcfile" || a == "--init-file":
			i++ // takes a value
			continue
		case a == "-s" || a == "-i" || strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.ContainsAny(a, "si"):
			return errOpaque("a shell reading commands from stdin or interactively")
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a, "c"):
			withC = true
			continue
		case strings.HasPrefix(a, "-") || strings.HasPrefix(a, "+"):
			continue
		}
		if withC {
			return r.read(a, depth+1)
		}
		if a == "-" || a == "/dev/stdin" || strings.HasPrefix(a, "/dev/fd/") || strings.HasPrefix(a, "/proc/") {
			return errOpaque("a shell reading its script from stdin")
		}
		return nil // a script file: decided as the shell
	}
	if withC {
		return errOpaque("sh -c without a command string")
	}
	return errOpaque("a shell reading commands from stdin (a pipe, a here-document or a redirection)")
}

// next is what a wrapper runs: the words of the wrapped command, or a
// shell string.
type next struct {
	args        []*syntax.Word
	shellString string
}

// wrapperValues are the options of each wrapper that take a separate
// value; positional is how many operands come before the command.
var wrappers = map[string]struct {
	values     string // space-separated options taking a value
	positional int
}{
	"sudo":       {"-u -g -h -p -C -U -r -t -D -R -T --user --group --host --prompt --close-from --other-user --role --type --chdir --chroot --command-timeout", 0},
	"doas":       {"-u -C", 0},
	"env":        {"-u -C --unset --chdir", 0},
	"nice":       {"-n --adjustment", 0},
	"nohup":      {"", 0},
	"time":       {"-f -o --format --output", 0},
	"timeout":    {"-s -k --signal --kill-after", 1},
	"stdbuf":     {"-i -o -e", 0},
	"setsid":     {"", 0},
	"command":    {"", 0},
	"builtin":    {"", 0},
	"exec":       {"-a", 0},
	"xargs":      {"-I -n -P -L -d -E -s -a --max-args --max-procs --max-lines --delimiter --eof --max-chars --arg-file --replace", 0},
	"ionice":     {"-c -n -t --class --classdata", 0},
	"taskset":    {"", 1},
	"chroot":     {"--userspec --groups", 1},
	"unbuffer":   {"", 0},
	"caffeinate": {"-t -w", 0},
}

// fileCommand describes a program whose operands name files it writes
// (or reads): values are its options taking a separate value.
type fileCommand struct {
	values string
	// last: only the last operand (or -t DIR) is written; the others
	// are read (sources "read": cp, install), written too (sources
	// "write": mv removes them) or not opened (ln).
	last    bool
	sources string
}

var fileCommands = map[string]fileCommand{
	"tee":      {},
	"touch":    {values: "-r -d -t --reference --date"},
	"truncate": {values: "-s -r --size --reference"},
	"mkdir":    {values: "-m --mode"},
	"rmdir":    {},
	"rm":       {},
	"unlink":   {},
	"shred":    {values: "-n -s --iterations --size --random-source"},
	"mkfifo":   {values: "-m --mode"},
	"cp":       {values: "-t -S --target-directory --suffix", last: true, sources: "read"},
	"mv":       {values: "-t -S --target-directory --suffix", last: true, sources: "write"},
	"ln":       {values: "-t -S --target-directory --suffix", last: true},
	"install":  {values: "-m -o -g -t -S --mode --owner --group --target-directory --suffix", last: true, sources: "read"},
}

// operands records the files a program's operands name when the program
// is one that writes files: tee, touch, truncate, mkdir, rmdir, rm,
// unlink, shred, mkfifo, cp, mv, ln, install, dd (of=, if=) and sed -i.
// An operand that is not a literal is opaque. It also notes the wrappers
// that change the working directory (env -C, sudo -D).
func (r *shellReader) operands(base string, args []*syntax.Word) error {
	lits := make([]string, 0, len(args))
	for _, w := range args {
		v, ok := literal(w)
		if !ok {
			if _, fc := fileCommands[base]; fc || base == "dd" || base == "sed" {
				return errOpaque(base + " names a file with a word that is not a literal (globs, variables, a tilde)")
			}
			if base == "git" && (len(lits) == 0 || strings.HasPrefix(lits[len(lits)-1], "-")) {
				return errOpaque("git with an option or subcommand that is not a literal")
			}
			return nil // other programs: their arguments are theirs
		}
		lits = append(lits, v)
	}
	switch base {
	case "git":
		return gitOptions(lits)
	case "read", "getopts", "unset", "printf":
		for i, a := range lits {
			if base == "printf" && (i == 0 || lits[i-1] != "-v") {
				continue // printf assigns only the name after -v
			}
			if dangerousVar(a) {
				return errOpaque(base + " " + a + " changes how programs are found or started")
			}
		}
		return nil
	case "env", "sudo":
		chdir := map[string]byte{"env": 'C', "sudo": 'D'}[base]
		values := strings.Fields(wrappers[base].values)
		for _, a := range lits {
			flags, _, _ := shortOptions(a, values)
			if strings.HasPrefix(a, "--chdir") || strings.IndexByte(flags, chdir) >= 0 {
				r.changesDir = true
			}
		}
		return nil
	case "dd":
		for _, a := range lits {
			if v, ok := strings.CutPrefix(a, "of="); ok {
				r.out.Writes = append(r.out.Writes, v)
			} else if v, ok := strings.CutPrefix(a, "if="); ok {
				r.out.Reads = append(r.out.Reads, v)
			}
		}
		return nil
	case "sed":
		return r.sedOperands(lits)
	}
	fc, ok := fileCommands[base]
	if !ok {
		return nil
	}
	values := strings.Fields(fc.values)
	var ops []string
	target := ""
	dirs := false // install -d: every operand is a directory made
	for i := 0; i < len(lits); i++ {
		a := lits[i]
		switch {
		case a == "--":
			ops = append(ops, lits[i+1:]...)
			i = len(lits)
		case fc.last && (a == "-t" || a == "--target-directory") && i+1 < len(lits):
			target = lits[i+1]
			i++
		case fc.last && strings.HasPrefix(a, "--target-directory="):
			target = strings.TrimPrefix(a, "--target-directory=")
		case base == "install" && a == "--directory":
			dirs = true
		case strings.HasPrefix(a, "--"):
			for _, v := range values {
				if a == v {
					i++
					break
				}
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags, value, takesNext := shortOptions(a, values)
			if takesNext && i+1 < len(lits) {
				i++
				value = lits[i]
			}
			dirs = dirs || base == "install" && strings.IndexByte(flags, 'd') >= 0
			if fc.last && strings.HasSuffix(flags, "t") {
				target = value
			}
		default:
			ops = append(ops, a)
		}
	}
	switch {
	case !fc.last || dirs:
		r.out.Writes = append(r.out.Writes, ops...)
	case target != "":
		r.out.Writes = append(r.out.Writes, target)
		r.sources(fc, ops)
	case base == "ln" && len(ops) == 1:
		r.out.Writes = append(r.out.Writes, path.Base(ops[0])) // a link in the working directory
	case len(ops) > 0:
		r.out.Writes = append(r.out.Writes, ops[len(ops)-1])
		r.sources(fc, ops[:len(ops)-1])
	}
	return nil
}

// gitOptions refuses git's global options that make it run a command
// the line does not name: -c and --config-env with a key that runs one,
// --exec-path=DIR.
func gitOptions(lits []string) error {
	for i, a := range lits {
		if !strings.HasPrefix(a, "-") {
			return nil // the subcommand: its arguments are its own
		}
		key := ""
		switch {
		case (a == "-c" || a == "--config-env") && i+1 < len(lits):
			key = lits[i+1]
		case strings.HasPrefix(a, "--config-env="):
			key = strings.TrimPrefix(a, "--config-env=")
		case strings.HasPrefix(a, "-c") && len(a) > 2:
			key = a[2:]
		case strings.HasPrefix(a, "--exec-path="):
			return errOpaque("git --exec-path runs git commands from another directory")
		}
		key, _, _ = strings.Cut(strings.ToLower(key), "=")
		for _, part := range gitRunsConfig {
			if strings.Contains(key, part) {
				return errOpaque("git -c " + key + " makes git run a command the line does not name")
			}
		}
	}
	return nil
}

// sources records the source operands of cp, mv and install.
func (r *shellReader) sources(fc fileCommand, ops []string) {
	switch fc.sources {
	case "write":
		r.out.Writes = append(r.out.Writes, ops...)
	case "read":
		r.out.Reads = append(r.out.Reads, ops...)
	}
}

// sedOperands records the files sed -i edits in place: its operands after
// the script (the first operand, unless -e or -f gives it).
func (r *shellReader) sedOperands(lits []string) error {
	inPlace, script := false, false
	var ops []string
	for i := 0; i < len(lits); i++ {
		a := lits[i]
		switch {
		case a == "--":
			ops = append(ops, lits[i+1:]...)
			i = len(lits)
		case a == "-e" || a == "-f" || a == "--expression" || a == "--file":
			script = true
			i++
		case a == "-l" || a == "--line-length":
			i++
		case strings.HasPrefix(a, "--expression=") || strings.HasPrefix(a, "--file="):
			script = true
		case a == "--in-place" || strings.HasPrefix(a, "--in-place="):
			inPlace = true
		case strings.HasPrefix(a, "-i"):
			inPlace = true // -i[SUFFIX]
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(a) > 1:
			if strings.ContainsAny(a, "i") {
				inPlace = true
			}
			if strings.ContainsAny(a, "ef") {
				script = true // -ne SCRIPT: the value is the next word
				i++
			}
		case strings.HasPrefix(a, "--"):
		default:
			ops = append(ops, a)
		}
	}
	if !inPlace {
		return nil
	}
	if !script && len(ops) > 0 {
		ops = ops[1:]
	}
	r.out.Writes = append(r.out.Writes, ops...)
	return nil
}

// wrapped returns what a wrapper command runs, nil if nothing (or it is
// not a wrapper).
func wrapped(base string, args []*syntax.Word, src string) (*next, error) {
	switch base {
	case "find":
		for i, w := range args {
			if v, ok := literal(w); ok && (v == "-exec" || v == "-execdir" || v == "-ok" || v == "-okdir") {
				if i+1 >= len(args) {
					return nil, nil
				}
				return &next{args: args[i+1:]}, nil
			}
		}
		return nil, nil
	case "watch", "su", "flock", "script":
		return shellStringOf(base, args, src)
	}
	w, ok := wrappers[base]
	if !ok {
		return nil, nil
	}
	values := strings.Fields(w.values)
	positional := w.positional
	shellFlag := false
	for i := 0; i < len(args); i++ {
		a, ok := literal(args[i])
		if !ok {
			return nil, errOpaque(base + " runs a command that is not a literal")
		}
		switch {
		case a == "--":
			if i+1+positional < len(args) {
				return &next{args: args[i+1+positional:]}, nil
			}
			return nil, nil
		case base == "env" && (a == "-S" || strings.HasPrefix(a, "--split-string") || strings.HasPrefix(a, "-S")):
			return nil, errOpaque("env -S splits a string into a command")
		case (base == "env" || base == "sudo") && strings.Contains(a, "=") && !strings.HasPrefix(a, "-"):
			// sudo takes NAME=value before the command, as env does.
			if name, _, _ := strings.Cut(a, "="); dangerousVar(name) {
				return nil, errOpaque(base + " " + name + "= changes how programs are found or started")
			}
			continue
		case (base == "sudo" || base == "doas") && (a == "--shell" || a == "--login"):
			shellFlag = true
			continue
		case strings.HasPrefix(a, "--"):
			for _, v := range values {
				if a == v {
					i++
					break
				}
			}
			continue
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags, _, takesNext := shortOptions(a, values)
			if takesNext {
				i++
			}
			shellFlag = shellFlag || (base == "sudo" || base == "doas") && strings.ContainsAny(flags, "si")
			continue
		}
		if positional > 0 {
			positional--
			continue
		}
		return &next{args: args[i:]}, nil
	}
	if shellFlag {
		return nil, errOpaque(base + " -s or -i without a command starts a shell that reads its commands from stdin")
	}
	return nil, nil
}

// shortOptions reads a cluster of short options ("-Eu", "-t/etc", "-n5")
// as getopt does: flags are its letters up to the first that takes a
// value (listed in values as "-x"), value is what follows that letter in
// the word, and takesNext says that the value is the next word.
func shortOptions(a string, values []string) (flags, value string, takesNext bool) {
	if !strings.HasPrefix(a, "-") || strings.HasPrefix(a, "--") {
		return "", "", false
	}
	for j := 1; j < len(a); j++ {
		for _, v := range values {
			if len(v) == 2 && v[1] == a[j] {
				return a[1 : j+1], a[j+1:], j+1 == len(a)
			}
		}
	}
	return a[1:], "", false
}

// shellStringOf handles the wrappers that hand a string to sh -c: watch
// (its operands joined), su -c, flock -c and script -c.
func shellStringOf(base string, args []*syntax.Word, src string) (*next, error) {
	var lits []string
	for _, w := range args {
		v, ok := literal(w)
		if !ok {
			return nil, errOpaque(base + " runs a command string that is not a literal")
		}
		lits = append(lits, v)
	}
	if base == "watch" {
		var ops []string
		for i := 0; i < len(lits); i++ {
			switch a := lits[i]; {
			case a == "-n" || a == "--interval":
				i++
			case strings.HasPrefix(a, "-") && len(ops) == 0:
			default:
				ops = append(ops, a)
			}
		}
		if len(ops) == 0 {
			return nil, nil
		}
		return &next{shellString: strings.Join(ops, " ")}, nil
	}
	for i, a := range lits {
		if a == "-c" || a == "--command" {
			if i+1 < len(lits) {
				return &next{shellString: lits[i+1]}, nil
			}
			return nil, errOpaque(base + " -c without a command string")
		}
	}
	if base == "su" || base == "script" {
		// su starts a login shell, script a recorded one: either reads
		// its commands from stdin (`echo rm -rf / | su`).
		return nil, errOpaque(base + " without -c starts a shell that reads its commands from stdin")
	}
	// flock FILE COMMAND...
	if len(args) >= 2 {
		return &next{args: args[1:]}, nil
	}
	return nil, nil
}

// literal returns the value of a word that the shell takes literally:
// unquoted text without globs, braces or a leading tilde (backslash
// escapes removed), single- and ANSI-C-quoted strings, and double-quoted
// strings without expansions.
func literal(w *syntax.Word) (string, bool) {
	if w == nil {
		return "", false
	}
	var b strings.Builder
	for i, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.Lit:
			if p.Value == "[" && len(w.Parts) == 1 {
				return "[", true // the test builtin: an unclosed "[" is no glob
			}
			v, ok := unescape(p.Value, i == 0, false)
			if !ok {
				return "", false
			}
			b.WriteString(v)
		case *syntax.SglQuoted:
			if !p.Dollar {
				b.WriteString(p.Value)
				continue
			}
			v, err := expand.Literal(nil, &syntax.Word{Parts: []syntax.WordPart{p}})
			if err != nil {
				return "", false
			}
			b.WriteString(v)
		case *syntax.DblQuoted:
			if p.Dollar {
				return "", false // $"..." is translated at run time
			}
			for _, q := range p.Parts {
				l, ok := q.(*syntax.Lit)
				if !ok {
					return "", false
				}
				v, _ := unescape(l.Value, false, true)
				b.WriteString(v)
			}
		default:
			return "", false
		}
	}
	return b.String(), true
}

// unescape removes the backslash escapes of unquoted (or, with inDbl,
// double-quoted) text. Unquoted, an unescaped glob or brace character,
// or a leading tilde (first), makes it not literal.
func unescape(s string, first, inDbl bool) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			n := s[i+1]
			if inDbl && !strings.ContainsRune("$`\"\\\n", rune(n)) {
				b.WriteByte(c)
				continue
			}
			i++
			if n != '\n' {
				b.WriteByte(n)
			}
			continue
		case !inDbl && strings.IndexByte("*?[{", c) >= 0:
			return "", false
		case !inDbl && first && i == 0 && c == '~':
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// notLiteral says why a word is not a literal.
func notLiteral(w *syntax.Word) string {
	why := "not a literal"
	syntax.Walk(w, func(n syntax.Node) bool {
		switch n.(type) {
		case *syntax.CmdSubst:
			why = "command substitution"
		case *syntax.ProcSubst:
			why = "process substitution"
		}
		return true
	})
	return why
}

func wordText(src string, w *syntax.Word) string {
	s, e := int(w.Pos().Offset()), int(w.End().Offset())
	if s < 0 || e > len(src) || s > e {
		return ""
	}
	return src[s:e]
}
