// Package btree reads what syncdb needs from SQLite's B-tree pages (the
// file format's "B-tree pages" section): which pages are interior pages,
// and their children.
package btree

import "encoding/binary"

// Page types, from the first byte of a B-tree page's header.
const (
	InteriorIndex = 0x02
	InteriorTable = 0x05
	LeafIndex     = 0x0a
	LeafTable     = 0x0d
)

// header returns the offset of the page header: page 1 starts with the
// 100-byte database header.
func header(pgno uint32) int {
	if pgno == 1 {
		return 100
	}
	return 0
}

// Kind returns the B-tree page type of page pgno, or 0 if it is none.
func Kind(pgno uint32, page []byte) byte {
	off := header(pgno)
	if len(page) <= off {
		return 0
	}
	switch k := page[off]; k {
	case InteriorIndex, InteriorTable, LeafIndex, LeafTable:
		return k
	}
	return 0
}

// Children returns the child page numbers (1-based, as SQLite stores them)
// of a B-tree interior page, or nil for any other page.
func Children(pgno uint32, page []byte) []uint32 {
	off := header(pgno)
	if len(page) < off+12 {
		return nil
	}
	kind := page[off]
	if kind != InteriorIndex && kind != InteriorTable {
		return nil
	}
	n := int(binary.BigEndian.Uint16(page[off+3:]))
	right := binary.BigEndian.Uint32(page[off+8:])
	children := make([]uint32, 0, n+1)
	cells := off + 12
	for i := 0; i < n; i++ {
		if cells+2*i+2 > len(page) {
			break
		}
		cell := int(binary.BigEndian.Uint16(page[cells+2*i:]))
		if cell+4 > len(page) {
			continue
		}
		children = append(children, binary.BigEndian.Uint32(page[cell:]))
	}
	return append(children, right)
}
