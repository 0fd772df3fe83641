// Package compare finds the rows in which the dbs of a sync differ, in bounded memory.
//
// Every db's rows are digested in blocks: a row's block is a hash of its key (the same
// block on every db), and a block's digest is its row count and two sums of 32-bit pieces
// of the md5 of each row's text, an aggregate that needs no ordering. PostgreSQL computes
// the digests itself (Digest); a db that is not PostgreSQL is read through its sink
// (sinks.Reader) and digested here (Digester) the same way. Only the blocks whose digests
// differ are read again, row by row as (block, key, md5 of the row), ordered the same on
// every db, and merged (Merge): a key absent on some dbs or whose md5 differs is a
// difference. A key with captured changes still pending on a source is in flight: the next
// run of the sync settles it.
//
// A row's text is PostgreSQL's record output of its columns, keys first
// (ROW(k1, ..., c1, ...)::text), with ibex's session settings; a key's text is the record
// of its key columns. RecordText renders the same from COPY text fields.
//
// The package holds the SQL of the comparison and the pure parts; package job connects,
// takes the snapshots and drives it.
package compare

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
)

// DefaultBlockRows is the number of rows a block holds on average when the caller sets none.
const DefaultBlockRows = 1000

// MaxBlocks caps the number of blocks of a table.
const MaxBlocks = 1 << 20

// Blocks returns the number of blocks for a table of about rows rows.
func Blocks(rows float64, blockRows int) int {
	if blockRows <= 0 {
		blockRows = DefaultBlockRows
	}
	n := int(rows/float64(blockRows)) + 1
	return min(max(n, 1), MaxBlocks)
}

// keyText is the SQL text of the key of a row of alias (prefix "x." or "").
func keyText(prefix string, keys []string) string {
	return `ROW(` + catalog.QuoteCols(prefix, keys) + `)::text`
}

// rowText is the SQL text of a whole row, keys first (cols).
func rowText(prefix string, cols []string) string {
	return `ROW(` + catalog.QuoteCols(prefix, cols) + `)::text`
}

// Scheme is how a comparison hashes: the number of blocks, and which hashes. The portable
// scheme (md5) is what Digester reproduces for dbs that are not PostgreSQL; the fast one,
// for comparisons between PostgreSQL dbs only (14 or later: bit_xor), uses PostgreSQL's
// own hash functions (hashtext, hashtextextended), several times cheaper than md5.
type Scheme struct {
	Blocks int
	Fast   bool
}

// blockOf is the SQL block number (0..Blocks-1) of a key text.
func (s Scheme) blockOf(kt string) string {
	n := strconv.Itoa(s.Blocks)
	if s.Fast {
		return `((hashtext(` + kt + `) & 2147483647) % ` + n + `)`
	}
	return `mod(mod(('x' || left(md5(` + kt + `), 8))::bit(32)::int, ` + n + `) + ` + n + `, ` + n + `)`
}

// Estimate returns about how many rows the table named by the text $1 (a quoted,
// qualified name) holds, partitions included, from the catalog, without reading it: the
// planner's count, or one row per 100 bytes when that is higher (a table never analysed).
const Estimate = `SELECT coalesce(sum(greatest(c.reltuples::float8, pg_relation_size(c.oid) / 100.0)), 0)::float8
FROM pg_class c WHERE c.oid = $1::regclass OR c.oid IN (SELECT p.relid FROM pg_partition_tree($1::regclass) p WHERE p.isleaf)`

// Digest is the statement digesting the rows of from (a table or a subquery of its
// filtered rows, aliased x) in blocks: one row per non-empty block, in block order:
// block, rows, and two int8 terms: portable, the sums of the first and of the second 32
// bits of each row's md5 (signed); fast, the xor of each row's 64-bit hash, and 0.
func (s Scheme) Digest(from string, keys, cols []string) string {
	if s.Fast {
		return `SELECT b, count(*), coalesce(bit_xor(h), 0)::int8, 0::int8
FROM (SELECT ` + s.blockOf(keyText("x.", keys)) + ` AS b, hashtextextended(` + rowText("x.", cols) + `, 0) AS h FROM ` + from + ` x) y GROUP BY b ORDER BY b`
	}
	return `SELECT b, count(*), coalesce(sum(('x' || left(h, 8))::bit(32)::int), 0)::int8, coalesce(sum(('x' || substr(h, 9, 8))::bit(32)::int), 0)::int8
FROM (SELECT ` + s.blockOf(keyText("x.", keys)) + ` AS b, md5(` + rowText("x.", cols) + `) AS h FROM ` + from + ` x) y GROUP BY b ORDER BY b`
}

// Rows is the statement reading, from the rows of from in the blocks listed by $1 (int4[]),
// block, key text, each key column and the row's md5, ordered by block and key text
// (bytewise). Read it in the text result format: the key columns' text is then their
// output, as COPY writes them (a cast to text differs for some types: boolean).
func (s Scheme) Rows(from string, keys, cols []string) string {
	kt := keyText("x.", keys)
	return `SELECT ` + s.blockOf(kt) + `, (` + kt + `) COLLATE "C", ` + catalog.QuoteCols("x.", keys) + `, md5(` + rowText("x.", cols) + `)
FROM ` + from + ` x WHERE ` + s.blockOf(kt) + ` = ANY($1::int4[]) ORDER BY 1, 2`
}

// PendingKeys is the statement reading, from changed (a statement listing the keys of
// captured changes, capture.ChangedKeys), the distinct keys in the blocks listed by $1, as
// block and key text, ordered like Rows.
func (s Scheme) PendingKeys(changed string, keys []string) string {
	kt := keyText("z.", keys)
	return `SELECT DISTINCT ` + s.blockOf(kt) + `, (` + kt + `) COLLATE "C" FROM (` + changed + `) z WHERE ` + s.blockOf(kt) + ` = ANY($1::int4[]) ORDER BY 1, 2`
}

// RecordText renders fields as PostgreSQL's record output does: (a,b,...), a NULL as
// nothing, a value quoted (with " and \ doubled) when it is empty or holds a quote, a
// backslash, a parenthesis, a comma or white space.
func RecordText(fields []conflict.Field) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		if f.Null {
			continue
		}
		quote := f.Text == ""
		for j := 0; j < len(f.Text) && !quote; j++ {
			switch f.Text[j] {
			case '"', '\\', '(', ')', ',', ' ', '\t', '\n', '\r', '\f':
				quote = true
			}
		}
		if !quote {
			b.WriteString(f.Text)
			continue
		}
		b.WriteByte('"')
		for j := 0; j < len(f.Text); j++ {
			c := f.Text[j]
			if c == '"' || c == '\\' {
				b.WriteByte(c)
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	b.WriteByte(')')
	return b.String()
}

// BlockDigest is one block's digest on one db.
type BlockDigest struct {
	Rows   int64
	S1, S2 int64
}

// sums are the two terms Digest sums for a row of md5 h.
func sums(h [16]byte) (int64, int64) {
	return int64(int32(binary.BigEndian.Uint32(h[0:4]))), int64(int32(binary.BigEndian.Uint32(h[4:8])))
}

// BlockOfKey returns the block of a key text, as the portable scheme's SQL does.
func BlockOfKey(kt string, nb int) int32 {
	kh := md5.Sum([]byte(kt))
	v := int64(int32(binary.BigEndian.Uint32(kh[0:4])))
	n := int64(nb)
	return int32(((v % n) + n) % n)
}

// Line is one row of a db that is not PostgreSQL, decoded for the comparison.
type Line struct {
	Block   int32
	KeyText string
	Key     []string // the key columns' text
	Hash    string   // md5 of the row text, hex
}

// DecodeLine decodes a COPY text row (keys first, nk key columns) into a Line.
func DecodeLine(line string, nk, nb int) (Line, error) {
	fs, err := conflict.DecodeCopyLine(line)
	if err != nil {
		return Line{}, err
	}
	if len(fs) < nk {
		return Line{}, fmt.Errorf("row has %d fields, the key %d", len(fs), nk)
	}
	kt := RecordText(fs[:nk])
	key := make([]string, nk)
	for i := range key {
		key[i] = fs[i].Text
	}
	h := md5.Sum([]byte(RecordText(fs)))
	return Line{Block: BlockOfKey(kt, nb), KeyText: kt, Key: key, Hash: hex.EncodeToString(h[:])}, nil
}

// Add adds a row of hex md5 h to a block's digest.
func (d *BlockDigest) Add(h string) error {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("bad row digest %q", h)
	}
	s1, s2 := sums([16]byte(b))
	d.Rows++
	d.S1 += s1
	d.S2 += s2
	return nil
}

// DifferingBlocks returns the blocks whose digests are not the same on every db, in order.
// digests[i][b] is db i's digest of block b.
func DifferingBlocks(digests [][]BlockDigest) []int32 {
	if len(digests) == 0 {
		return nil
	}
	var out []int32
	for b := range digests[0] {
		for _, d := range digests[1:] {
			if d[b] != digests[0][b] {
				out = append(out, int32(b))
				break
			}
		}
	}
	return out
}

// RowsByKey is the statement reading (in the text result format, see Rows) the columns cols of the rows of from whose
// keys are listed by the parameters $1..$n, one text[] per key column (keyTypes are their
// types, format_type text), index-friendly.
func RowsByKey(from string, keys, keyTypes, cols []string) string {
	var un []string
	for i, typ := range keyTypes {
		un = append(un, fmt.Sprintf(`$%d::text[]::%s[]`, i+1, typ))
	}
	return `SELECT ` + catalog.QuoteCols("x.", cols) + ` FROM ` + from + ` x WHERE (` + catalog.QuoteCols("x.", keys) + `) IN (SELECT * FROM unnest(` + strings.Join(un, ", ") + `))`
}
