package actors

import "fmt"

// Level is an actor's place in the call order: an actor may Ask (or Enter)
// only actors at a higher level than its own, so the graph of blocking
// calls is a DAG and no two actors can wait on each other. Callers that are
// not actors (the facade, tests, SQLite's goroutines in the VFS) are
// LevelFacade, the top. docs/ARCHITECTURE.md §2 lists every edge.
type Level int

// The levels of syncdb's actors, top to bottom.
const (
	LevelFacade Level      = iota // not an actor: asks anyone
	LevelSync                     // syncactor: asks db, net, meta
	LevelDB                       // dbactor: asks meta; calls pageactor.Pages
	LevelPages                    // pageactor's fetch actor and the Pages object's asks: ask net
	LevelNet                      // netactor: asks nobody
	LevelMeta   = LevelNet        // metaactor: asks nobody (so neither may ask the other)
)

var levelNames = [...]string{"facade", "sync", "db", "pages", "net/meta"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level %d", int(l))
}

// CallOrderError is the panic value of an Ask or Enter against the call
// order, in a build with the invariants tag.
type CallOrderError struct {
	From  Level  // the caller's level (the Ref's From)
	Actor string // the actor asked
	Level Level  // its level
}

func (e *CallOrderError) Error() string {
	return fmt.Sprintf("call order: an actor at level %s asked %s, at level %s (an actor asks only actors below it)", e.From, e.Actor, e.Level)
}
