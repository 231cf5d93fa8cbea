// Package hranapb holds the protobuf encoding of Hrana 3 (POST
// /v3-protobuf/pipeline and /v3-protobuf/cursor, and the "hrana3-protobuf"
// WebSocket subprotocol), generated from hrana.proto, and its conversion to
// and from the JSON model of package hrana, which the server executes.
//
// To regenerate hrana.pb.go, install the tools once:
//
//	apt-get install protobuf-compiler
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//
// then run go generate in this directory (protoc-gen-go must be on PATH).
package hranapb

//go:generate protoc --go_out=. --go_opt=paths=source_relative hrana.proto
