package server

import (
	"net/http"
	"strings"
)

// isWebSocket tells whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, name string) {
	httpError(w, http.StatusNotImplemented, "Hrana over WebSocket is not served yet")
}
