package diskstore

import "github.com/cockroachdb/pebble/v2"

// CorruptForTest overwrites the value of every record of kind with bytes
// no decoder takes.
func CorruptForTest(s *Store, kind byte) error {
	var keys [][]byte
	if err := s.scan(kind, func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.db.Set(k, []byte{0xff, 0xff, 0xff}, pebble.Sync); err != nil {
			return err
		}
	}
	return nil
}

// CheckSpaceNow looks at the free space now rather than at the next tick.
func CheckSpaceNow(s *Store) { s.checkSpace(s.space) }

// KeysForTest counts the records of kind.
func KeysForTest(s *Store, kind byte) int {
	n := 0
	_ = s.scan(kind, func(_, _ []byte) error { n++; return nil })
	return n
}

// SetForTest writes a raw record, synced.
func SetForTest(s *Store, k, v []byte) error { return s.db.Set(k, v, pebble.Sync) }

// GetForTest reads a raw record ("" when there is none).
func GetForTest(s *Store, k []byte) string {
	v, closer, err := s.db.Get(k)
	if err != nil {
		return ""
	}
	defer closer.Close()
	return string(v)
}

// SweepForTest makes the record sweep run every `every` writes on records
// older than age writes, until the test ends.
func SweepForTest(t interface{ Cleanup(func()) }, every, age int) {
	e, a := sweepEvery, sweepAge
	sweepEvery, sweepAge = every, age
	t.Cleanup(func() { sweepEvery, sweepAge = e, a })
}

// RecordBytesForTest sums the bytes of the mailbox records.
func RecordBytesForTest(s *Store) int {
	n := 0
	_ = s.scan(kindRecord, func(_, v []byte) error { n += len(v); return nil })
	return n
}
