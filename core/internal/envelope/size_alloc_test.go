package envelope

import "testing"

func TestSizeAllocs(t *testing.T) {
	e := &Envelope{Version: 3, Subject: "ada", Payload: make([]byte, 100), Changed: []Changed{{"a", 1}}}
	if n := testing.AllocsPerRun(100, func() { _ = e.Size() }); n != 0 {
		t.Fatalf("Size allocates %v times", n)
	}
}
