// Command crictl is a small stand-in for cri-tools' crictl. Debian bookworm
// ships no cri-tools package, so this is built from the vendored packages of
// the Kubernetes source tree (see hack/install-kubernetes.sh). It covers what
// kubeadm runs (info, pods -q, stopp, rmp, pull, inspecti) and the commands a
// person needs to look around a node, with crictl's flags and output formats.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

const version = "v1.20.0-capkind"

// options holds the global flags; every command's flag set shares them, so
// they may be given before or after the command name.
type options struct {
	runtimeEndpoint string
	imageEndpoint   string
	configFile      string
	timeout         time.Duration // 0: default (2s to connect, see callTimeout)
	debug           bool
	showVersion     bool
}

var opts options

type command struct {
	usage string // "ARGS" part of the usage line
	help  string
	// flags registers the command's own flags; run gets the positionals.
	flags func(fs *flag.FlagSet)
	run   func(args []string) error
}

var commands = map[string]*command{}

// addGlobalFlags registers the global flags on fs, skipping names the
// command already uses (logs -t is --timestamps, as in cri-tools). Current
// values serve as defaults so flags given before the command survive.
func addGlobalFlags(fs *flag.FlagSet) {
	str := func(p *string, name, help string) {
		if fs.Lookup(name) == nil {
			fs.StringVar(p, name, *p, help)
		}
	}
	boolean := func(p *bool, name, help string) {
		if fs.Lookup(name) == nil {
			fs.BoolVar(p, name, *p, help)
		}
	}
	str(&opts.runtimeEndpoint, "runtime-endpoint", "CRI runtime endpoint (env CONTAINER_RUNTIME_ENDPOINT; default "+defaultEndpoint+")")
	str(&opts.runtimeEndpoint, "r", "shorthand for --runtime-endpoint")
	str(&opts.imageEndpoint, "image-endpoint", "CRI image endpoint (env IMAGE_SERVICE_ENDPOINT; default: the runtime endpoint)")
	str(&opts.imageEndpoint, "i", "shorthand for --image-endpoint")
	str(&opts.configFile, "config", "config file (env CRI_CONFIG_FILE; default /etc/crictl.yaml)")
	str(&opts.configFile, "c", "shorthand for --config")
	for _, name := range []string{"timeout", "t"} {
		if fs.Lookup(name) == nil {
			fs.DurationVar(&opts.timeout, name, opts.timeout, "timeout for connecting and for each call (default 2s to connect, no limit for pull)")
		}
	}
	boolean(&opts.debug, "debug", "accepted and ignored")
	boolean(&opts.debug, "D", "accepted and ignored")
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "crictl %s: a minimal CRI client (subset of cri-tools' crictl)\n\n", version)
	fmt.Fprintf(w, "Usage: crictl [global flags] COMMAND [flags] [ARGS]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].help)
	}
	fmt.Fprintf(w, "\nNot implemented: exec, attach, run, create, start, port-forward, stats, update.\n")
	fmt.Fprintf(w, "\nGlobal flags:\n")
	fs := flag.NewFlagSet("crictl", flag.ContinueOnError)
	addGlobalFlags(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nRun 'crictl COMMAND --help' for a command's flags.\n")
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "crictl: %v\n", err)
	os.Exit(1)
}

func main() {
	fs := flag.NewFlagSet("crictl", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported on one line below
	addGlobalFlags(fs)
	fs.BoolVar(&opts.showVersion, "version", false, "print the crictl version")
	fs.BoolVar(&opts.showVersion, "v", false, "print the crictl version")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			usage(os.Stdout)
			return
		}
		fail(err)
	}
	if opts.showVersion {
		fmt.Printf("crictl version %s\n", version)
		return
	}
	args := fs.Args()
	if len(args) == 0 || args[0] == "help" {
		usage(os.Stdout)
		return
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "crictl: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		os.Exit(1)
	}

	cfs := flag.NewFlagSet("crictl "+args[0], flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(cfs)
	}
	addGlobalFlags(cfs)
	pos, err := parseInterspersed(cfs, args[1:])
	if err == flag.ErrHelp {
		fmt.Printf("Usage: crictl %s\n\n%s\n", strings.TrimSpace(args[0]+" [flags] "+cmd.usage), cmd.help)
		if cmd.flags != nil {
			// Only the command's own flags; "crictl --help" lists the global ones.
			hfs := flag.NewFlagSet("", flag.ContinueOnError)
			cmd.flags(hfs)
			hfs.SetOutput(os.Stdout)
			fmt.Printf("\nFlags:\n")
			hfs.PrintDefaults()
		}
		return
	}
	if err != nil {
		fail(err)
	}
	if err := loadConfig(); err != nil {
		fail(err)
	}
	if err := cmd.run(pos); err != nil {
		fail(err)
	}
}

// parseInterspersed parses flags that may come after positional arguments
// ("crictl logs ID --tail 5"), as cri-tools allows; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	args = expandShortFlags(fs, args)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// expandShortFlags turns "-aq" into "-a -q" when every letter is a boolean
// flag, so the combined short options people type for crictl still work.
func expandShortFlags(fs *flag.FlagSet, args []string) []string {
	var out []string
	for _, a := range args {
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && !strings.Contains(a, "=") && fs.Lookup(a[1:]) == nil {
			var parts []string
			for _, c := range a[1:] {
				if !isBoolFlag(fs, string(c)) {
					parts = nil
					break
				}
				parts = append(parts, "-"+string(c))
			}
			if parts != nil {
				out = append(out, parts...)
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// loadConfig fills in endpoints and timeout that were not given as flags, from
// the environment and then from crictl.yaml (kindest/node ships
// /etc/crictl.yaml). The file is a flat "key: value" YAML, so no YAML library.
func loadConfig() error {
	if opts.runtimeEndpoint == "" {
		opts.runtimeEndpoint = os.Getenv("CONTAINER_RUNTIME_ENDPOINT")
	}
	if opts.imageEndpoint == "" {
		opts.imageEndpoint = os.Getenv("IMAGE_SERVICE_ENDPOINT")
	}
	path := opts.configFile
	if path == "" {
		path = os.Getenv("CRI_CONFIG_FILE")
	}
	explicit := path != ""
	if path == "" {
		path = "/etc/crictl.yaml"
	}
	data, err := os.ReadFile(path)
	if err != nil && (explicit || !os.IsNotExist(err)) {
		return fmt.Errorf("reading config: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(strings.TrimSpace(k), "#") {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		switch strings.TrimSpace(k) {
		case "runtime-endpoint":
			if opts.runtimeEndpoint == "" {
				opts.runtimeEndpoint = v
			}
		case "image-endpoint":
			if opts.imageEndpoint == "" {
				opts.imageEndpoint = v
			}
		case "timeout":
			if opts.timeout == 0 {
				// cri-tools stores whole seconds; also accept "10s".
				if d, err := time.ParseDuration(v); err == nil {
					opts.timeout = d
				} else if d, err := time.ParseDuration(v + "s"); err == nil {
					opts.timeout = d
				}
			}
		}
	}
	if opts.runtimeEndpoint == "" {
		opts.runtimeEndpoint = defaultEndpoint
	}
	if opts.imageEndpoint == "" {
		opts.imageEndpoint = opts.runtimeEndpoint
	}
	return nil
}
