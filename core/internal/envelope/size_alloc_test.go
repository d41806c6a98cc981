package envelope

import "testing"

func TestSizeAllocs(t *testing.T) {
	e := &Envelope{Version: 3, Subject: "ada", Payload: make([]byte, 100), Changed: []Changed{{"a", 1}}}
	if n := testing.AllocsPerRun(100, func() { _ = e.Size() }); n != 0 {
		t.Fatalf("Size allocates %v times", n)
	}
}

// Keys too long to list are recorded as AllKeys once, however many there
// are, so they do not push listed keys out.
func TestNoteWrittenLongKeysShareAllKeys(t *testing.T) {
	var e Envelope
	long := string(make([]byte, maxKey+1))
	e.NoteWritten(long+"a", 1)
	e.NoteWritten(long+"b", 2)
	if len(e.Written) != 1 || e.Written[0].Key != AllKeys || e.Written[0].Version != 2 {
		t.Fatalf("Written = %+v, want one AllKeys entry at version 2", e.Written)
	}
}
