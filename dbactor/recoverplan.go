package dbactor

import (
	"fmt"

	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// The recovery of an interrupted pull, as decisions apart from their I/O.
// planPending decides which pull a crash left pending (if any, or why the
// replica cannot be opened), planRecover what finishing that pull takes
// (abandon it, or record its new base after running T2 if it is not in
// the WAL). Both are pure: they read recoveryFacts, and when a decision
// needs a fact not read yet they return a step that asks for it (Need);
// the executor (pull.go: learner) reads it from the files and asks again
// (decide), then does what was decided (pendingOf, execRecover). So each
// fact is read only where the old code read it, in the same order, and a
// failure to read one fails recovery as before.
// TestRecoverPlan runs testdata/recover/*.txt through the same loop with
// the facts given by each scenario.

// need names a fact that recovery reads from the files only on demand.
type need uint

const (
	needNothing     need = 0
	needJournal     need = 1 << iota // the journal's header: recoveryFacts.Journal, JournalPull
	needBody                         // whether the journal after its header is whole: BodyTorn
	needProgress                     // the pull's T1 and T2 in the WAL (from the step's Before): T1, T2
	needLocalTables                  // whether the database has _syncdb_local: LocalTables
	needRecordsPull                  // whether T2's record in the database names the pull: RecordsPull
	needBaseInWAL                    // whether the WAL still holds the synced base's frames: BaseLost
	needWALEnd                       // the end of the WAL's valid log: WALEnd
)

func (n need) String() string {
	switch n {
	case needJournal:
		return "journal header"
	case needBody:
		return "journal body"
	case needProgress:
		return "progress"
	case needLocalTables:
		return "local tables"
	case needRecordsPull:
		return "records pull"
	case needBaseInWAL:
		return "base in WAL"
	case needWALEnd:
		return "WAL end"
	}
	return fmt.Sprintf("need(%d)", uint(n))
}

// journalState is what reading the replay journal's header found.
type journalState int

const (
	journalWhole     journalState = iota // a header this release reads (the body is checked apart: needBody)
	journalMissing                       // no journal file
	journalTorn                          // the header is not whole (errTornJournal)
	journalNewer                         // a newer release's format, its header decoded as far as this release knows it
	journalUndecoded                     // a newer release's header that does not decode: whether it records a pull is unknown
)

// recoveryFacts is what recovery knows of the replica: the first group
// from the actor's state and -info, always there; the rest read on demand
// (known says which).
type recoveryFacts struct {
	InfoPull      *messages.PendingPull // a pending pull that -info records (older versions did)
	Pulled        *walfile.Position     // -info's Pulled: the Before of the last finished pull
	SyncedFrom    string                // -info's synced revision ("" if none)
	BaseWAL       walfile.Position      // -info's base W
	Fresh         bool                  // -info says Fresh: a bootstrap's database, no pull ran
	Created       bool                  // this open created the database file
	Writer        bool                  // the writer connection is there
	Detached      bool                  // the open found the files modified outside syncdb
	Checkpointing bool                  // -info records an interrupted checkpoint
	Stamped       bool                  // -info holds the database file's stamp (checked at open)
	Server        bool                  // a server is on record (a synced revision or a remote URL)

	known       need
	Journal     journalState
	JournalPull *messages.PendingPull // the journal header's pull (nil: none, or not decoded)
	BodyTorn    bool
	T1          *walfile.Position // the position after the pull's T1, nil if T1 did not commit
	T2          bool              // T2 committed after T1
	LocalTables bool
	RecordsPull bool
	BaseLost    bool // walIndex found the base's frames gone (ErrExternalModification)
	WALEnd      walfile.Position

	// The errors the facts were read from, which a refusal wraps.
	tornErr, newerErr, baseErr error
}

// recoveryAction is what a step decides.
type recoveryAction int

const (
	actAsk     recoveryAction = iota // read the fact Need, then decide again
	actNone                          // no pull pending (planPending), or none to finish (planRecover)
	actPending                       // Pull is pending (planPending)
	actRefuse                        // recovery cannot go on: Refusal says why
	actAbandon                       // T1 did not commit: forget the pull (abandonPull)
	actFinish                        // T1 committed: record Record's base, after T2 if Replay
)

func (a recoveryAction) String() string {
	switch a {
	case actAsk:
		return "ask"
	case actNone:
		return "none"
	case actPending:
		return "pending"
	case actRefuse:
		return "refuse"
	case actAbandon:
		return "abandon"
	case actFinish:
		return "finish"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// refusal is why recovery refuses to go on (the error the executor makes
// of it: dbActor.refusal, pull.go).
type refusal int

const (
	refuseNone            refusal = iota
	refuseNoWriter                // the writer connection is gone (ErrNoWriter)
	refuseTornNoWriter            // a torn journal, and no writer to tell whether its pull began (ErrNoWriter)
	refuseMissingNoWriter         // no journal, and no writer to tell whether a pull began (ErrNoWriter)
	refuseTorn                    // a torn journal after its pull's T1 (ErrCorruptJournal)
	refuseNewer                   // a newer release's pending pull (ErrNewerJournal)
	refuseMissingDetached         // no journal, no local tables, a detached replica (ErrCorruptJournal)
	refuseMissingBaseLost         // no journal, and the WAL lost the synced base (ErrExternalModification)
	refuseMissingNoServer         // no journal, no local tables, no server on record (ErrCorruptJournal)
	refuseMissing                 // no journal after a pull's T1 (ErrCorruptJournal)
)

func (r refusal) String() string {
	switch r {
	case refuseNoWriter:
		return "no writer"
	case refuseTornNoWriter:
		return "a torn journal, no writer to tell"
	case refuseMissingNoWriter:
		return "no journal, no writer to tell"
	case refuseTorn:
		return "a torn journal after T1"
	case refuseNewer:
		return "a newer release's pending pull"
	case refuseMissingDetached:
		return "no journal, no local tables, detached"
	case refuseMissingBaseLost:
		return "no journal, the base lost from the WAL"
	case refuseMissingNoServer:
		return "no journal after a T1, no server on record"
	case refuseMissing:
		return "no journal after a T1"
	}
	return fmt.Sprintf("refusal(%d)", int(r))
}

// recoveryStep is one decision: a fact to read, or what recovery does.
type recoveryStep struct {
	Action  recoveryAction
	Need    need             // actAsk: the fact to read
	Before  walfile.Position // actAsk of needProgress or needRecordsPull: the pull's Before
	Why     string           // actNone, actPending, actAbandon: why, for readers of the tests
	Pull    *messages.PendingPull
	Refusal refusal // actRefuse

	// actFinish: the new base to record (PullTime is the executor's),
	// whether -revert.next (an older version's) becomes the revert store
	// first, whether T2 runs (Replay, from the revision From) and whether
	// -info's write is deferred (T2 recorded the base in the database).
	Record         syncedBase
	TakeRevertNext bool
	Replay         bool
	From           string
	Deferred       bool
}

func ask(n need) recoveryStep { return recoveryStep{Action: actAsk, Need: n} }

func askAt(n need, before walfile.Position) recoveryStep {
	return recoveryStep{Action: actAsk, Need: n, Before: before}
}

func none(why string) recoveryStep { return recoveryStep{Action: actNone, Why: why} }

func refuse(r refusal) recoveryStep { return recoveryStep{Action: actRefuse, Refusal: r} }

func pending(p *messages.PendingPull, why string) recoveryStep {
	return recoveryStep{Action: actPending, Pull: p, Why: why}
}

// decide runs plan until it decides, reading each fact it asks for with
// learn (which fills it in f). A plan that asks for a fact it was given
// is a bug that would loop: decide panics.
func decide(f *recoveryFacts, plan func(*recoveryFacts) recoveryStep, learn func(*recoveryFacts, recoveryStep) error) (recoveryStep, error) {
	for {
		s := plan(f)
		if s.Action != actAsk {
			return s, nil
		}
		if f.known&s.Need != 0 {
			panic(fmt.Sprintf("dbactor: recovery asked again for %v", s.Need))
		}
		if err := learn(f, s); err != nil {
			return s, err
		}
		f.known |= s.Need
	}
}

// planPending decides which pull an interrupted ApplyPull left to finish:
// the one the replay journal records, unless -info's Pulled says it was
// finished (or, from older versions, the one -info records). None if
// none.
//
// The journal stays after a pull (the next one rewrites it in place), so
// Pulled is what tells a finished pull's journal. This runs before
// reconcileBase (open.go: a database between T1 and T2 is the server's), so
// when a power loss took -info's deferred write, Pulled is older and a
// finished pull's journal is taken as pending: planRecover then finds its
// T1 and T2 in the WAL, skips the replay and records the same base T2 did
// (a checkpoint writes -info, Pulled included, before it empties the WAL).
//
// A journal that is not whole (errTornJournal) is no pending pull if its
// pull never reached T1: a crash interrupted its rewrite, and T1 runs only
// once the journal is fsynced (whatever the file held before was a
// finished pull's: a pull rewrites it only once nothing is pending). But
// one found so after T1 committed (damage) held the only copy of the local
// changes: that is ErrCorruptJournal, the journal left alone (see
// planDamagedJournal); so is no journal at all after a T1
// (planMissingJournal). A newer release's journal is no pending pull once
// its pull is finished (planNewerJournal).
func planPending(f *recoveryFacts) recoveryStep {
	if f.InfoPull != nil {
		return pending(f.InfoPull, "-info records it (an older version)")
	}
	if f.known&needJournal == 0 {
		return ask(needJournal)
	}
	switch f.Journal {
	case journalMissing:
		return planMissingJournal(f)
	case journalTorn:
		return planDamagedJournal(f, false)
	case journalNewer, journalUndecoded:
		return planNewerJournal(f)
	}
	p := f.JournalPull
	if p == nil {
		return none("a rebuild's journal: it records no pull")
	}
	if f.Pulled != nil && *f.Pulled == p.Before {
		return none("a finished pull's journal: -info's Pulled names its pull")
	}
	// Its header is whole; the rest must be too.
	if f.known&needBody == 0 {
		return ask(needBody)
	}
	if !f.BodyTorn {
		return pending(p, "the journal records it")
	}
	if f.known&needProgress == 0 {
		return askAt(needProgress, p.Before)
	}
	if f.T2 {
		return pending(p, "T2 committed: it holds the changes, recovery needs only the header")
	}
	return planDamagedJournal(f, f.T1 != nil)
}

// planDamagedJournal decides what a journal that is not whole means: no
// pending pull if the pull it was written for cannot have reached T1, else
// ErrCorruptJournal. ranT1: the header is whole and the WAL holds that
// pull's T1. Otherwise the database tells: the replica's own always has
// _syncdb_local (every open creates it, before any pull can run), the
// server's pages that a T1 wrote have none (unless a remote writer planted
// one: not told apart here), which also covers a WAL that no longer holds
// the pull's generation (a detached replica's, checkpointed by another
// program). A fresh bootstrap's database, the server's too, has had no
// pull.
func planDamagedJournal(f *recoveryFacts, ranT1 bool) recoveryStep {
	if ranT1 {
		return refuse(refuseTorn)
	}
	if f.Fresh {
		return none("a torn journal of a fresh bootstrap's database, which has had no pull")
	}
	if !f.Writer {
		return refuse(refuseTornNoWriter)
	}
	if f.known&needLocalTables == 0 {
		return ask(needLocalTables)
	}
	if f.LocalTables {
		return none("a torn rewrite: the database has _syncdb_local, no T1 ran")
	}
	return refuse(refuseTorn)
}

// planNewerJournal decides what a journal of a newer format means: none
// if its pull is finished or it records none, else a refusal that says to
// open the replica with the newer release. A finished pull's journal stays
// in place (the next pull rewrites it), so refusing every newer journal
// would keep this release from ever opening a replica a newer one pulled
// into: whether the pull is finished is told from what this release reads,
// -info's Pulled or T2's record in the database (the one a newer release's
// T2 writes as this one's does; a server's pages cannot name the pull, see
// recordsPull), and reconcileBase takes that record if a power loss took
// -info's. A pending one is left to the release that wrote it: only it can
// read the changes, and even one whose T1 never committed is not abandoned
// here (its semantics are that release's).
func planNewerJournal(f *recoveryFacts) recoveryStep {
	p := f.JournalPull
	if p == nil && f.Journal != journalUndecoded {
		return none("a newer release's rebuild journal: it records no pull")
	}
	if p != nil {
		if f.Pulled != nil && *f.Pulled == p.Before {
			return none("a newer release's finished pull: -info's Pulled names it")
		}
		if f.Writer {
			if f.known&needRecordsPull == 0 {
				return askAt(needRecordsPull, p.Before)
			}
			if f.RecordsPull {
				return none("a newer release's finished pull: T2's record in the database names it")
			}
		}
	}
	return refuse(refuseNewer)
}

// planMissingJournal decides what no journal at all means: no pull
// pending unless the database shows that a pull's T1 committed, and the
// only copy of the unpushed changes went with the file (deleted by hand,
// or a backup restored without it): then ErrCorruptJournal. The WAL
// cannot tell without the journal's Before; the database does as in
// planDamagedJournal: the replica's own always has _syncdb_local (created
// durably before -info drops Fresh, dropBootstrapped), the server's pages
// a T1 wrote have none. Every other state has the table: before any
// pull (Fresh, or the first open created it), an abandoned pull (T1 never
// ran), after T2 (it creates the table again), a rebuilt replica (opened
// fresh, then its import journal removed), a database this open creates
// (a local one, whose -info says Fresh too until then: Open).
//
// A database without the table is not always a T1's, though: its WAL may
// have lost the frames that created it (a backup restored without its
// -wal; an earlier release's first open killed before they committed, or
// under SyncNormal a power loss after it, which that release recreated).
// A WAL that lost the base's frames is an outside modification, the
// verdict loadBase would give: the replica opens read only, as any other
// (Config.Recover). And with the database file as syncdb left it (its
// stamp checked at open: nobody checkpointed into it since), a T1 would
// be a commit in the WAL after the base's W, where the pull's Before is;
// none there: no pull ran T1, and the open creates the tables. (A WAL
// that lost local commits -info records never gets here: openFiles
// refuses it first, checkLocalWAL; this judges -info without the record,
// an earlier release's, and a WAL that held none.) Without a
// stamp (a partial replica; a local database never checkpointed) another
// program's checkpoint could have moved a T1 into the file: refused.
func planMissingJournal(f *recoveryFacts) recoveryStep {
	if f.Fresh || f.Created {
		return none("no journal before any pull: a fresh bootstrap's database, or one this open created")
	}
	if !f.Writer {
		return refuse(refuseMissingNoWriter)
	}
	if f.known&needLocalTables == 0 {
		return ask(needLocalTables)
	}
	if f.LocalTables {
		return none("no journal, and the database has _syncdb_local: no T1 ran since the last pull finished")
	}
	if f.Detached {
		// A rebuild (Config.Recover) reads the local state from the
		// journal or the database: here from neither.
		return refuse(refuseMissingDetached)
	}
	// Checkpointing: an interrupted checkpoint may have restarted the WAL
	// the base points into, and the stamp was not checked; neither test
	// holds until recoverCheckpoint ran.
	if !f.Checkpointing {
		if f.known&needBaseInWAL == 0 {
			return ask(needBaseInWAL)
		}
		if f.BaseLost {
			return refuse(refuseMissingBaseLost)
		}
		if f.Stamped {
			if f.known&needWALEnd == 0 {
				return ask(needWALEnd)
			}
			// The valid log's end: in W's generation, or in a later one
			// SQLite restarted over a copied W, every commit of which
			// follows the base.
			b, end := f.BaseWAL, f.WALEnd
			if end.Frame == 0 || end.Salt1 == b.Salt1 && end.Salt2 == b.Salt2 && end.Frame <= b.Frame {
				return none("no journal, and the stamped database's WAL has no commit after W: no T1 ran (its local tables were lost with the WAL)")
			}
		}
	}
	if !f.Server {
		return refuse(refuseMissingNoServer)
	}
	return refuse(refuseMissing)
}

// planRecover decides how to finish the pending pull p: abandon it if T1
// did not commit, else record the new base, after running T2 if the WAL
// does not hold it.
//
// The new base's revert store is empty: T1 wrote the base image of every
// page it holds (loadBase cuts the file to the recorded length), and page
// 1's true header is recorded with the base. A pull of an older version
// saved page 1 in -revert.next instead, which becomes the revert store
// before T2 can record the new base: once that record is durable, an open
// takes the pull for finished and would never rename.
//
// T2 recorded the new base in the database (durably: the pull runs
// synchronous=FULL), so -info is not written when T2 runs now (deferred):
// the next write of -info (a checkpoint, a clean close, an open) carries
// it, and an open after a crash takes it from the database if -info is
// older (reconcileBase). A T2 found in the WAL may be an older version's,
// which recorded nothing: then -info is written.
func planRecover(f *recoveryFacts, p *messages.PendingPull) recoveryStep {
	if p == nil {
		return none("no pull pending")
	}
	if !f.Writer { // writeBase could not reopen it
		return refuse(refuseNoWriter)
	}
	if f.known&needProgress == 0 {
		return askAt(needProgress, p.Before)
	}
	if f.T1 == nil {
		return recoveryStep{Action: actAbandon, Pull: p, Why: "T1 did not commit"}
	}
	page1 := p.Page1
	if p.NextRevertLen > 0 {
		page1 = nil
	}
	s := recoveryStep{
		Action: actFinish,
		Pull:   p,
		Record: syncedBase{
			Revision: p.Revision,
			Base:     messages.Base{DBSize: p.DBSize, WAL: *f.T1, RevertLen: p.NextRevertLen, Page1: page1},
			Pulled:   p.Before,
		},
		TakeRevertNext: p.NextRevertLen > 0,
		Replay:         !f.T2,
	}
	if s.Replay {
		s.From = p.From
		if s.From == "" {
			s.From = f.SyncedFrom // a journal of an older version
		}
		s.Deferred = true
	}
	return s
}
