package walfile

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// FuzzScanner feeds arbitrary bytes to the header and frame parser, both
// from the start and from an arbitrary resume position, and checks that it
// never panics and that whatever it returns is well formed.
func FuzzScanner(f *testing.F) {
	f.Add(buildWAL(false, 512, 1, 2, 0, []synthFrame{{1, 0, 1}, {2, 2, 2}, {3, 3, 3}}), 2, uint64(0), true)
	f.Add(buildWAL(true, 1024, 7, 8, 1, []synthFrame{{1, 1, 1}, {1, 0, 2}}), 1, uint64(0), true)
	f.Add([]byte{}, 0, uint64(0), false)
	f.Add(make([]byte, 100), 5, uint64(1), false)
	f.Fuzz(func(t *testing.T, data []byte, frame int, cksum uint64, sameSalts bool) {
		h, herr := ParseHeader(data)

		// From the beginning.
		s, err := NewScanner(bytes.NewReader(data), int64(len(data)), Position{})
		if err != nil {
			if !errors.Is(err, ErrInvalidHeader) || herr == nil {
				t.Fatalf("NewScanner: %v (ParseHeader: %v)", err, herr)
			}
			return
		}
		if len(data) >= HeaderSize && (herr != nil || s.Header() != h) {
			t.Fatalf("header mismatch: %v %+v %+v", herr, s.Header(), h)
		}
		txns := checkedScan(t, s, data, 1)

		// Resuming after the first transaction yields the rest.
		if len(txns) > 0 {
			s0, _ := NewScanner(bytes.NewReader(data), int64(len(data)), Position{})
			if _, err := s0.Next(); err != nil {
				t.Fatal(err)
			}
			pos := s0.Position()
			if pos.Frame != txns[0][len(txns[0])-1].Index || pos.Salt1 != h.Salt1 || pos.Salt2 != h.Salt2 {
				t.Fatalf("position %+v after first transaction", pos)
			}
			s1, err := NewScanner(bytes.NewReader(data), int64(len(data)), pos)
			if err != nil {
				t.Fatalf("resume from %+v: %v", pos, err)
			}
			rest := checkedScan(t, s1, data, pos.Frame+1)
			if !slices.EqualFunc(rest, txns[1:], slices.Equal) {
				t.Fatal("resumed scan differs")
			}
		}

		// Index over everything returned.
		all := slices.Concat(txns...)
		x := BuildIndex(all)
		for _, fr := range all {
			if got, ok := x.Lookup(fr.Pgno, fr.Index); !ok || got.Index < fr.Index {
				t.Fatalf("Lookup(%d, %d) = %+v, %v", fr.Pgno, fr.Index, got, ok)
			}
		}
		_ = x.ChangedAfter(frame)
		_, _ = x.DBSize(frame)

		// From an arbitrary position.
		from := Position{Frame: frame, Cksum1: uint32(cksum), Cksum2: uint32(cksum >> 32)}
		if sameSalts {
			from.Salt1, from.Salt2 = h.Salt1, h.Salt2
		}
		s2, err := NewScanner(bytes.NewReader(data), int64(len(data)), from)
		if err != nil {
			if !errors.Is(err, ErrPositionMismatch) && !errors.Is(err, ErrInvalidHeader) {
				t.Fatalf("NewScanner(%+v): %v", from, err)
			}
			return
		}
		checkedScan(t, s2, data, s2.Position().Frame+1)
	})
}

// checkedScan reads all transactions and checks their structure.
func checkedScan(t *testing.T, s *Scanner, data []byte, firstIndex int) [][]Frame {
	t.Helper()
	var txns [][]Frame
	next := firstIndex
	for {
		txn, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(txn) == 0 {
			t.Fatal("empty transaction")
		}
		for i, fr := range txn {
			if fr.Index != next || fr.Pgno == 0 || fr.IsCommit() != (i == len(txn)-1) {
				t.Fatalf("bad frame %+v (want index %d, %d of %d)", fr, next, i+1, len(txn))
			}
			if fr.Offset != s.Header().FrameOffset(fr.Index)+FrameHeaderSize ||
				fr.Offset+int64(s.PageSize()) > int64(len(data)) {
				t.Fatalf("bad offset %+v", fr)
			}
			if _, err := ReadPage(bytes.NewReader(data), fr, s.PageSize(), nil); err != nil {
				t.Fatalf("ReadPage: %v", err)
			}
			next++
		}
		if s.Position().Frame != next-1 {
			t.Fatalf("position %+v after frame %d", s.Position(), next-1)
		}
		txns = append(txns, txn)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("Next after EOF: %v", err)
	}
	return txns
}

// TestWriteFuzzSeeds regenerates the committed seed corpus from real WAL
// files when WALFILE_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("WALFILE_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set WALFILE_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz/FuzzScanner")
	}
	path := filepath.Join(t.TempDir(), "seed.db")
	pre, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"PRAGMA page_size=512", "VACUUM"} {
		if _, err := pre.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	pre.Close()
	d := openTestDBAt(t, path)
	d.exec("CREATE TABLE t(x)")
	d.exec("INSERT INTO t VALUES (randomblob(100))")
	d.exec("INSERT INTO t VALUES (randomblob(600))")
	walBytes, err := os.ReadFile(d.wal())
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(walBytes)
	if err != nil || h.PageSize != 512 {
		t.Fatalf("header %+v, %v", h, err)
	}
	corrupt := slices.Clone(walBytes)
	corrupt[len(corrupt)-100] ^= 1
	seeds := map[string]struct {
		data  []byte
		frame int
		same  bool
	}{
		"sqlite":         {walBytes, 0, false},
		"sqlite-resume":  {walBytes, 2, true},
		"sqlite-torn":    {walBytes[:len(walBytes)-300], 0, false},
		"sqlite-corrupt": {corrupt, 0, false},
		"header-only":    {walBytes[:HeaderSize], 0, false},
		"short-header":   {walBytes[:20], 0, false},
		"big-endian":     {buildWAL(true, 512, 3, 4, 0, []synthFrame{{1, 0, 1}, {2, 2, 2}, {2, 0, 3}}), 0, false},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzScanner")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nint(%d)\nuint64(0)\nbool(%v)\n",
			strconv.Quote(string(s.data)), s.frame, s.same)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
