// Package syncpb holds the protobuf messages of the Turso sync protocol's
// POST /pull-updates endpoint, generated from sync.proto.
//
// The request is a bare PullUpdatesReqProtoBody. The response body is a
// sequence of varint-length-delimited messages: one PullUpdatesRespProtoBody
// header, then (for the PAGES stream kind) zero or more PageData until EOF.
// Package wire implements that framing.
//
// To regenerate sync.pb.go, install the tools once:
//
//	apt-get install protobuf-compiler
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//
// then run go generate in this directory (protoc-gen-go must be on PATH).
package syncpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative sync.proto
