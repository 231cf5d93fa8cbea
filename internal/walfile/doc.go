// Package walfile reads SQLite write-ahead-log ("-wal") files directly.
//
// SQLite has no API that reports which pages a commit wrote, or what a page
// looked like as of an earlier point in the log, so syncdb reads the WAL
// itself: the server turns each newly committed transaction into a revision
// (page images plus database size), and the client locates the pages changed
// after a frame watermark and reads page images as of that watermark.
//
// # File layout
//
// A WAL file is a 32-byte header followed by frames. Frame i (1-based) starts
// at byte 32 + (i-1)*(24+pageSize): a 24-byte frame header, then one page image
// of pageSize bytes. All header fields are big-endian 32-bit integers:
//
//	WAL header:   magic, format version (3007000), page size, checkpoint
//	              sequence, salt-1, salt-2, checksum-1, checksum-2
//	frame header: page number, commit size, salt-1, salt-2,
//	              checksum-1, checksum-2
//
// The commit size is the database size in pages after the transaction for
// the last frame of a transaction (a "commit frame") and zero for every other
// frame. A transaction is committed exactly when its commit frame is in the
// log and valid; frames written before it (for example pages a large
// transaction spilled from its cache) are not part of the database until then.
//
// # Checksums
//
// The checksum is a pair of 32-bit sums (s0, s1), computed over a byte string
// whose length is a multiple of 8, taken as 32-bit words x[0], x[1], ...:
// for each pair of words, s0 += x[i] + s1, then s1 += x[i+1] + s0, with
// wrap-around arithmetic. The magic number decides the byte order of those
// words: 0x377f0683 (low bit set) means big-endian words, 0x377f0682 means
// little-endian words. SQLite writes its machine's native order, so a WAL
// written on amd64 or arm64 has magic 0x377f0682. Only the checksum input is
// affected; the header fields themselves are always big-endian.
//
// The header checksum covers the first 24 header bytes, starting from (0, 0).
// The checksum is cumulative across frames: frame 1 starts from the header's
// checksum, and every later frame starts from the checksum stored in the
// frame before it; each frame adds its first 8 header bytes and then its page
// image.
//
// # Valid frames and restarts
//
// When SQLite recovers a WAL it accepts the header only if the magic is one of
// the two values, the page size is a power of two from 512 to 65536, the
// header checksum matches and the version is 3007000. It then reads frames
// from frame 1 and stops at the first frame that is not valid. A frame is
// valid when its salt-1 and salt-2 equal the header's, its page number is not
// zero, and its stored checksum equals the cumulative checksum computed as
// above. The log ends at the last valid commit frame before that point;
// valid frames after it belong to an unfinished transaction and are ignored.
//
// After a checkpoint has copied every frame back into the database, the next
// writer restarts the log from frame 1: it writes a new header with the
// checkpoint sequence incremented, salt-1 incremented and a new random
// salt-2, and overwrites the file from the start without necessarily
// truncating it. Frames of the older generation left at the tail carry the
// old salts, so they fail validation and the log ends where the new
// generation's frames end. Because committed frames of one generation are
// never rewritten, a position (salts, frame count, running checksum) taken
// at a commit frame is enough to resume reading later without rescanning.
//
// This package follows exactly these rules: Scanner yields only whole,
// valid, committed transactions, stops where SQLite recovery would stop,
// and reports when the salts show that the log was restarted.
// Scan (or Scanner.Each) is the scan loop over a Scanner's transactions.
package walfile
