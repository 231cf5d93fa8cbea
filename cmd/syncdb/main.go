// Command syncdb runs the syncdb sync server and, later, client commands.
//
//	syncdb serve [--addr 127.0.0.1:8080] [--data ./syncdb-data] [--auth-token T]... [--read-token T]... [--no-auto-create]
package main

import (
	"fmt"
	"os"
)

const usage = `syncdb: an offline-first SQLite database that syncs both ways, and its server.

Usage:
  syncdb serve [flags]    run the sync server (syncdb serve -h for flags)

`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "syncdb: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncdb:", err)
		os.Exit(1)
	}
}
