package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/server/pgstore"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const serveHelp = `Usage: syncdb serve [flags]

Runs the sync server: it serves any number of databases over HTTP to syncdb
replicas and to Turso's clients (@tursodatabase/sync), each at /db/NAME
(the root is database "default"): pulls from its page history, pushes as
SQL transactions, long polls, bearer-token auth. SIGINT or SIGTERM stops it
after the requests in flight.

Flags:
`

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	data := fs.String("data", "./syncdb-data", "data directory (one subdirectory per database)")
	var authTokens, readTokens, dbs listFlag
	fs.Var(&authTokens, "auth-token", "require `TOKEN` (read-write) as Authorization: Bearer; repeatable")
	fs.Var(&readTokens, "read-token", "also accept `TOKEN` for pulls only; repeatable")
	fs.Var(&dbs, "db", "create database `NAME` at start; repeatable")
	noAuto := fs.Bool("no-auto-create", false, "answer 404 for databases that do not exist instead of creating them")
	retention := fs.Duration("history-retention", 7*24*time.Hour, "how long old revisions stay servable (0 = forever)")
	jwtKeys := fs.String("auth-jwt-key-file", "", "also accept JWTs signed with the Ed25519 public key(s) in `FILE` (PEM or base64); see README, Security")
	maxBody := fs.Int64("max-push-bytes", 256<<20, "largest /v2/pipeline request body")
	maxResponse := fs.Int64("max-response-bytes", 64<<20, "largest /v2/pipeline response, and largest value a statement may make or store")
	maxInflight := fs.Int64("max-inflight-bytes", 1<<30, "request bodies and pipeline responses held in memory at once, over all requests")
	maxDBs := fs.Int("max-databases", 1000, "how many databases may exist (-1: no limit)")
	maxReqs := fs.Int("max-requests-per-db", 256, "requests one database serves at once (waiting long polls not counted)")
	idle := fs.Duration("idle-timeout", 10*time.Minute, "close a database no request used for this long")
	ioTimeout := fs.Duration("io-timeout", 30*time.Second, "drop a client that sends or reads nothing for this long")
	maxSQLiteMem := fs.Int64("max-sqlite-memory", 2<<30, "bytes SQLite may hold in all (a statement beyond fails with out of memory; 0: no limit)")
	stmtTimeout := fs.Duration("statement-timeout", time.Minute, "limit on one pipeline request's statements and on a query selector")
	streamIdle := fs.Duration("stream-idle-timeout", 10*time.Second, "a Hrana stream (and its open transaction) expires after this long without a request")
	streamBusy := fs.Duration("stream-busy-timeout", 10*time.Second, "how long a Hrana request waits for the writer while another stream's transaction is open (a cursor: for a reader connection)")
	streamTxn := fs.Duration("stream-txn-timeout", 5*time.Second, "an idle stream's open transaction is rolled back after this long if another stream waits for the writer; a busy one (sending requests) after twice this long, while another stream waits")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	store := fs.String("store", os.Getenv("SYNCDB_STORE"), "`postgres://...`: keep the databases in PostgreSQL, shared with other nodes (default $SYNCDB_STORE; empty: the data directory alone)")
	advertise := fs.String("advertise", "", "with --store: this node's `URL` for other nodes (default http://ADDR)")
	leaseTTL := fs.Duration("lease-ttl", 5*time.Second, "with --store: how long a node that stopped renewing keeps its writer leases")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), serveHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *version { // handled by run; listed for -h
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var keys []ed25519.PublicKey
	if *jwtKeys != "" {
		var err error
		if keys, err = server.LoadJWTKeys(*jwtKeys); err != nil {
			return fmt.Errorf("--auth-jwt-key-file: %w", err)
		}
	}
	// Before any database opens: the limit needs SQLite's memory
	// statistics, which can only be switched on before its first use (a
	// process that used SQLite before serve, a test, runs without it).
	if *maxSQLiteMem > 0 {
		if err := sqlitex.LimitHeap(*maxSQLiteMem); err != nil {
			log.Warn("the SQLite memory limit is not in force", "err", err)
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	reg := prometheus.NewRegistry()
	var cluster *pgstore.Cluster
	if *store != "" {
		adv := *advertise
		if adv == "" {
			if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
				ln.Close()
				return fmt.Errorf("serve: listening on %s: give --advertise http://HOST:PORT, the address other nodes reach this one at", ln.Addr())
			}
			adv = url
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cluster, err = pgstore.Open(ctx, pgstore.Config{URL: *store, Advertise: adv, TTL: *leaseTTL, Logger: log, Registry: reg})
		cancel()
		if err != nil {
			ln.Close()
			return fmt.Errorf("serve: --store: %w", err)
		}
	}
	cfg := server.Config{
		DataDir:                 *data,
		AuthTokens:              authTokens,
		ReadTokens:              readTokens,
		NoAutoCreate:            *noAuto,
		Databases:               dbs,
		JWTKeys:                 keys,
		MaxPipelineRequestBytes: *maxBody,
		MaxResponseBytes:        *maxResponse,
		MaxInflightBytes:        *maxInflight,
		MaxDatabases:            *maxDBs,
		MaxRequestsPerDatabase:  *maxReqs,
		IdleTimeout:             *idle,
		IOTimeout:               *ioTimeout,
		StatementTimeout:        *stmtTimeout,
		HistoryRetention:        *retention,
		StreamIdleTimeout:       *streamIdle,
		StreamBusyTimeout:       *streamBusy,
		StreamTxnTimeout:        *streamTxn,
		Logger:                  log,
		Registry:                reg,
	}
	if cluster != nil {
		cfg.Cluster = cluster
	}
	srv, err := server.New(cfg)
	if err != nil {
		ln.Close()
		if cluster != nil {
			cluster.Close()
		}
		return err
	}
	fmt.Printf("syncdb server listening on %s\n", url)
	if cluster != nil {
		fmt.Printf("  store: PostgreSQL, node %s\n", cluster.Node())
	}
	fmt.Printf("  database \"default\": %s\n  database NAME:      %s/db/NAME\n", url, url)
	os.Stdout.Sync()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Serve drains the requests in flight on SIGINT or SIGTERM and closes
	// srv, the HTTP server's timeouts included (see server.Serve).
	err = srv.Serve(ctx, ln)
	if cluster != nil {
		err = errors.Join(err, cluster.Close()) // after the databases: releases their leases
	}
	return err
}
