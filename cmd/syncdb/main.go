// Command syncdb is the syncdb sync server and a client for synced
// databases: an interactive SQL shell and one-shot commands for scripts.
//
//	syncdb serve [--addr 127.0.0.1:8080] [--data ./syncdb-data] [--auth-token T]... [--read-token T]... [--no-auto-create]
//	syncdb shell [--url URL] [--auth-token T] [-cmd COMMAND]... [-csv|-json|-box|...] PATH [SQL]...
//	syncdb pull|push|sync|stats|checkpoint [--url URL] [--auth-token T] [--json] PATH
//
// Run "syncdb help" for the list of commands and "syncdb COMMAND -h" for
// one command's flags.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// command is one subcommand of syncdb.
type command struct {
	name, args, summary string
	// help is the text after the usage line of "syncdb NAME -h".
	help string
	run  func(c *cli, cmd *command, args []string) int
}

// commands lists the subcommands in the order "syncdb help" shows them.
// serve keeps its own flag handling (serve.go); the client commands are in
// client.go and shell.go.
var commands []*command

func init() {
	commands = []*command{
		{name: "shell", args: "[--url URL] [--auth-token T] [--bail] [-cmd COMMAND]... [-csv|-json|-box|...] [-header] PATH [SQL]...", summary: "SQL on a synced database, like sqlite3 (from the SQL arguments, or stdin)", help: shellHelp, run: runShell},
		{name: "pull", args: "[--url URL] [--auth-token T] [--json] PATH", summary: "apply the server's changes to the local database", help: pullHelp, run: runPull},
		{name: "push", args: "[--url URL] [--auth-token T] [--json] PATH", summary: "send the local changes to the server", help: pushHelp, run: runPush},
		{name: "sync", args: "[--url URL] [--auth-token T] [--json] PATH", summary: "push, then pull", help: syncHelp, run: runSync},
		{name: "stats", args: "[--url URL] [--auth-token T] [--json] PATH", summary: "show the revision, last pull and push, unpushed changes and WAL sizes", help: statsHelp, run: runStats},
		{name: "checkpoint", args: "[--url URL] [--auth-token T] [--json] PATH", summary: "move the WAL into the database file", help: checkpointHelp, run: runCheckpoint},
		{name: "conflicts", args: "[--all] [--json] [--url URL] [--auth-token T] PATH [resolve ID local|remote]", summary: "list the local changes that conflict with other replicas', or resolve one", help: conflictsHelp, run: runConflicts},
		{name: "recover", args: "[--url URL] [--auth-token T] [--json] PATH", summary: "repair a replica that cannot sync: a copy, one modified outside syncdb, or one the server forgot", help: recoverHelp, run: runRecover},
		{name: "serve", args: "[flags]", summary: "run the sync server (syncdb serve -h for flags)", run: runServe},
		{name: "migrate-store", args: "--store postgres://... --data DIR", summary: "copy a single-node server's databases into a cluster's PostgreSQL store", help: migrateHelp, run: runMigrate},
		{name: "version", args: "", summary: "print the version (also: syncdb COMMAND --version)", run: runVersion},
		{name: "help", args: "[COMMAND]", summary: "show this list, or one command's help", run: runHelp},
	}
}

func usage() string {
	var b strings.Builder
	b.WriteString("syncdb: an offline-first SQLite database that syncs both ways, and its server.\n\nUsage:\n  syncdb COMMAND [flags] [args]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString(`
The first use of a PATH needs --url (the server, e.g. http://127.0.0.1:8080,
or http://HOST:PORT/db/NAME for database NAME); it downloads the database and
saves the URL, so later commands need only PATH. The auth token can be given
as --auth-token or in the SYNCDB_AUTH_TOKEN environment variable.

Exit status: 0 on success, 1 if the command failed, 2 for a usage error.
Run "syncdb COMMAND -h" for a command's flags.
`)
	return b.String()
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func main() {
	os.Exit(newCLI().run(os.Args[1:]))
}

// run dispatches to a subcommand and returns the exit status.
func (c *cli) run(args []string) int {
	if len(args) < 1 {
		fmt.Fprint(c.stderr, usage())
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help":
		fmt.Fprint(c.stdout, usage())
		return 0
	case "--version", "-version":
		fmt.Fprintln(c.stdout, versionText())
		return 0
	}
	cmd := findCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "syncdb: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if a == "--version" || a == "-version" {
			fmt.Fprintln(c.stdout, versionText())
			return 0
		}
	}
	return cmd.run(c, cmd, args[1:])
}

func runHelp(c *cli, _ *command, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, usage())
		return 0
	}
	if len(args) > 1 {
		fmt.Fprintf(c.stderr, "syncdb help: too many arguments\n")
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help":
		fmt.Fprint(c.stdout, usage())
		return 0
	}
	cmd := findCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "syncdb help: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	if cmd.name == "serve" {
		// serve prints its own flags on -h.
		return cmd.run(c, cmd, []string{"-h"})
	}
	cmd.printHelp(c.stdout)
	return 0
}

func (cmd *command) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: syncdb %s %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s", cmd.help)
	}
}

func runServe(c *cli, _ *command, args []string) int {
	if err := serve(args); err != nil {
		fmt.Fprintln(os.Stderr, "syncdb:", err)
		return 1
	}
	return 0
}

// versionText is what --version prints: the module version (or "devel"
// for a build from a checkout), the VCS revision it was built from, and
// the Go version.
func versionText() string {
	v, rev, modified, goVersion := "devel", "", false, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	out := "syncdb " + v
	if rev != "" {
		out += " " + rev[:min(12, len(rev))]
		if modified {
			out += "+modified"
		}
	}
	return out + " " + goVersion
}

func runVersion(c *cli, cmd *command, args []string) int {
	switch {
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help"):
		cmd.printHelp(c.stdout)
		return exitOK
	case len(args) > 0:
		return c.usageError(cmd, "unexpected arguments %q", args)
	}
	fmt.Fprintln(c.stdout, versionText())
	return exitOK
}
