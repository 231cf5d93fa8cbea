package zstdchunks

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
)

// sample is compressible data of n bytes: random hex text.
func sample(n int, seed uint64) []byte {
	var key [32]byte
	key[0] = byte(seed)
	raw := make([]byte, (n+1)/2)
	rand.NewChaCha8(key).Read(raw)
	return []byte(hex.EncodeToString(raw))[:n]
}

func compress(t *testing.T, data []byte, writes int) []byte {
	t.Helper()
	var out bytes.Buffer
	w := NewWriter(&out)
	step := max(1, len(data)/max(1, writes))
	for off := 0; off < len(data); off += step {
		if _, err := w.Write(data[off:min(len(data), off+step)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decompress(t *testing.T, stream []byte) ([]byte, error) {
	t.Helper()
	r := NewReader(io.NopCloser(iotest.HalfReader(bytes.NewReader(stream))))
	defer r.Close()
	return io.ReadAll(r)
}

// Whatever the sizes and the way it is written, the stream decodes to the
// same bytes with this package's parallel reader and with a standard
// zstd decoder, and it is smaller than the input.
func TestRoundTrip(t *testing.T) {
	std, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer std.Close()
	for _, c := range []struct{ n, writes int }{
		{0, 1}, {1, 1}, {4096, 1}, {ChunkSize - 1, 3}, {ChunkSize, 1}, {ChunkSize + 1, 1}, {3*ChunkSize + 12345, 1000},
	} {
		{
			n, writes := c.n, c.writes
			data := sample(n, uint64(n))
			stream := compress(t, data, writes)
			got, err := decompress(t, stream)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes in %d writes: parallel reader: %d bytes, equal %v, %v", n, writes, len(got), bytes.Equal(got, data), err)
			}
			want, err := std.DecodeAll(stream, nil)
			if err != nil || !bytes.Equal(want, data) {
				t.Fatalf("%d bytes: standard decoder: %d bytes, %v", n, len(want), err)
			}
			if n > 4096 && len(stream) > n*3/5 {
				t.Fatalf("%d bytes compressed to %d", n, len(stream))
			}
		}
	}
}

// A zstd stream made by another encoder (no chunk announcements) is read
// sequentially, whole.
func TestReadsAnyZstdStream(t *testing.T) {
	data := sample(2*ChunkSize+100, 7)
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(data)
	enc.Close()
	got, err := decompress(t, buf.Bytes())
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("standard stream: %d bytes, %v", len(got), err)
	}
}

// A stream cut anywhere, or damaged, is an error, never a short success.
func TestDamagedStreams(t *testing.T) {
	data := sample(2*ChunkSize+5000, 9)
	stream := compress(t, data, 1)
	for _, cut := range []int{1, announceSize - 1, announceSize + 10, len(stream) / 2, len(stream) - 1} {
		got, err := decompress(t, stream[:cut])
		if err == nil {
			t.Fatalf("cut at %d of %d: no error (%d bytes)", cut, len(stream), len(got))
		}
	}
	bad := bytes.Clone(stream)
	bad[announceSize+len(bad)/3] ^= 0xff // inside the first frame's blocks
	if _, err := decompress(t, bad); err == nil {
		t.Fatal("a damaged frame decoded without error")
	}
	huge := bytes.Clone(stream)
	huge[8], huge[9], huge[10], huge[11] = 0xff, 0xff, 0xff, 0x7f // announces a 2 GiB frame
	if _, err := decompress(t, huge); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an oversized announcement: %v", err)
	}
	if _, err := decompress(t, []byte("not zstd at all")); err == nil {
		t.Fatal("garbage decoded without error")
	}
}

// Close in the middle of a stream stops the reader and closes the source.
func TestCloseEarly(t *testing.T) {
	stream := compress(t, sample(6*ChunkSize, 3), 1) // more than the reader decodes ahead
	src := &closeCounter{Reader: bytes.NewReader(stream)}
	r := NewReader(src)
	if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if src.closed != 1 {
		t.Fatalf("source closed %d times", src.closed)
	}
	if _, err := r.Read(make([]byte, 10)); err == nil {
		t.Fatal("read after Close succeeded")
	}
	r.Close()
}

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// An error of the underlying writer is returned and nothing more is
// written.
func TestWriterError(t *testing.T) {
	w := NewWriter(failWriter{})
	data := sample(6*ChunkSize, 4)
	_, err := w.Write(data)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		t.Fatal("no error from a failing writer")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
